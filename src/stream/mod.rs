//! `dvault stream`: consume Kafka topics into the event log, exactly once.
//!
//! One fetching task per partition ([`kafka`]) hands records to the writer here,
//! which turns them into events ([`message`]) and writes each batch in one
//! transaction: the events, the rejections of the bad records (at their topic,
//! partition and offset) and the partitions' next offsets ([`offsets`]). So a crash at
//! any point leaves the log and the offsets agreeing, and the next start goes on from
//! the stored offsets: nothing lost, nothing twice (the log's `(source, id)` rule is
//! the second guard). The loop (`stream::consumer`) looks again every `--refresh-secs` at
//! the topics' partitions (a partition added is consumed from then on) and at the
//! group's other processes, which share the partitions ([`members`]).

mod consumer;
pub mod kafka;
pub mod members;
pub mod message;
pub mod offsets;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_postgres::Client;

use crate::events::ingest::{Rejection, store_rejections};
use crate::events::{
    APPEND_ATTEMPTS, Appended, NewEvent, append_salvaging, deadlock_pause, is_deadlock, render,
};
use crate::human::thousands;
use crate::ops::shutdown::Shutdown;
use consumer::{Consumer, Partition};
use kafka::{FetchOptions, Fetched, KafkaError, SaslPlain, StartAt};
use message::{Message, Spec};
use offsets::Move;

/// What `dvault stream` consumes and how.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    pub topics: Vec<String>,
    /// The name the offsets are stored under.
    pub group: String,
    pub spec: Spec,
    /// Where a partition with no stored offset starts.
    pub start_at: StartAt,
    /// Records per transaction, about (whole fetches: see `take_batch`).
    pub batch_size: usize,
    pub fetch: FetchOptions,
    /// Longest pause between attempts to reach a lost broker.
    pub max_backoff: Duration,
    /// How often the topics' partitions and the group's processes are looked at again.
    pub refresh: Duration,
    /// SASL PLAIN credentials, when the brokers ask for them.
    pub sasl: Option<SaslPlain>,
    /// TLS to the brokers, trusting the CA certificates of this PEM file.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Stop once every partition is consumed up to its end (as last fetched).
    pub exit_at_end: bool,
}

/// What a `dvault stream` run did.
#[derive(Debug, Clone, Default)]
pub struct StreamSummary {
    /// Partitions this process consumed (at some time of the run).
    pub partitions: usize,
    /// Records consumed (events, duplicates and rejections).
    pub records: u64,
    pub inserted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub batches: u64,
    pub elapsed: Duration,
}

impl fmt::Display for StreamSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "consumed {} records from {} partitions: {} events appended",
            thousands(self.records),
            self.partitions,
            thousands(self.inserted)
        )?;
        if self.duplicates > 0 {
            write!(f, ", {} already in the log", thousands(self.duplicates))?;
        }
        if self.rejected > 0 {
            write!(
                f,
                ", {} rejected (see dvault rejected)",
                thousands(self.rejected)
            )?;
        }
        let rate = self.records as f64 / self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            " in {:.2} s, {} records/s",
            self.elapsed.as_secs_f64(),
            thousands(rate as u64)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Boxed: rskafka's errors are large, and this one travels through every batch.
    #[error(transparent)]
    Kafka(Box<KafkaError>),
    #[error("writing to the event log failed: {}", crate::db::Shown(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Join(#[from] members::JoinError),
    #[error("{0}; stopped without storing the batch in hand")]
    Moved(String),
}

impl From<KafkaError> for StreamError {
    fn from(e: KafkaError) -> Self {
        StreamError::Kafka(Box::new(e))
    }
}

/// Consume until stopped (or, with `exit_at_end`, caught up). `client` holds this
/// process's member slot and partition locks for the run and writes every batch.
pub async fn run(
    client: &mut Client,
    opts: &StreamOptions,
    shutdown: Shutdown,
) -> Result<StreamSummary, StreamError> {
    let started = Instant::now();
    let Some(kafka_client) = kafka::connect(
        &opts.brokers,
        opts.max_backoff,
        opts.sasl.as_ref(),
        opts.tls_ca.as_deref(),
        &shutdown,
    )
    .await?
    else {
        return Ok(StreamSummary::default());
    };
    // the topics must exist at the start: a misspelt one stops here
    let places = kafka::partitions(&kafka_client, &opts.topics).await?;
    let slot = members::join(&*client, &opts.group, &opts.topics).await?;
    tracing::info!(group = %opts.group, slot, "joined the group");
    let mut consumer = Consumer::new(client, opts, kafka_client, slot, places);
    let mut summary = StreamSummary::default();
    let outcome = consumer.consume(&shutdown, &mut summary).await;
    consumer.leave().await;
    summary.partitions = consumer.taken();
    summary.elapsed = started.elapsed();
    outcome.map(|()| summary)
}

/// Whole fetches from the front of `pending` while they hold fewer than `size`
/// records together (at least one fetch). A fetch is never split: it ends at the end of
/// a record batch, so the offsets stored are always batch boundaries, where every
/// broker resumes correctly (tansu 0.6 skips the rest of a batch fetched from its
/// middle; see docs/events.md).
fn take_batch(pending: &mut VecDeque<Fetched>, size: usize) -> Vec<Fetched> {
    let mut taken = 0;
    let mut out = Vec::new();
    while let Some(f) = pending.pop_front() {
        if !out.is_empty() && taken + f.records.len() > size {
            pending.push_front(f);
            break;
        }
        taken += f.records.len();
        out.push(f);
    }
    out
}

/// The records of some fetches, as events and rejections, and where they move the
/// offsets.
struct Batch {
    events: Vec<NewEvent>,
    /// Partition index and offset of each event.
    places: Vec<(usize, i64)>,
    /// Rejections by partition index (`line` is the offset).
    rejects: BTreeMap<usize, Vec<Rejection>>,
    moves: Vec<Move>,
}

impl Batch {
    fn of(fetched: &[Fetched], parts: &[Partition], spec: &Spec) -> Batch {
        let now = Utc::now();
        let mut batch = Batch {
            events: Vec::new(),
            places: Vec::new(),
            rejects: BTreeMap::new(),
            moves: Vec::new(),
        };
        let mut ends: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
        for f in fetched {
            let part = &parts[f.index];
            for r in &f.records {
                let msg = Message {
                    topic: &part.at.topic,
                    partition: part.at.partition,
                    offset: r.offset,
                    value: r.record.value.as_deref(),
                    headers: &r.record.headers,
                    timestamp: r.record.timestamp,
                };
                match message::to_event(&msg, spec, now) {
                    Ok(e) => {
                        batch.events.push(e);
                        batch.places.push((f.index, r.offset));
                    }
                    Err(refusal) => batch.rejects.entry(f.index).or_default().push(Rejection {
                        line: u64::try_from(r.offset).unwrap_or_default(),
                        reason: refusal.reason,
                        raw: refusal.raw,
                    }),
                }
            }
            if let Some(last) = f.records.last() {
                ends.insert(f.index, (last.offset + 1, f.high_watermark));
            }
        }
        batch.moves = ends
            .into_iter()
            .map(|(index, (to, high_watermark))| Move {
                at: parts[index].at.clone(),
                from: parts[index].stored,
                to,
                high_watermark: high_watermark.max(to),
            })
            .collect();
        batch
    }
}

/// Write one batch in one transaction (tried again when PostgreSQL breaks a deadlock
/// with another writer of the same events): events, rejections, offsets.
async fn write(
    client: &mut Client,
    group: &str,
    batch: &Batch,
    parts: &[Partition],
    span: &tracing::Span,
) -> Result<(Appended, u64), StreamError> {
    let mut attempt = 1;
    loop {
        match write_once(client, group, batch, parts).await {
            Err(StreamError::Db(e)) if is_deadlock(&e) && attempt < APPEND_ATTEMPTS => {
                tracing::warn!(parent: span, attempt, "deadlock with another writer; writing the batch again");
                tokio::time::sleep(deadlock_pause(attempt)).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

async fn write_once(
    client: &mut Client,
    group: &str,
    batch: &Batch,
    parts: &[Partition],
) -> Result<(Appended, u64), StreamError> {
    let tx = client.transaction().await?;
    // the safety net: events the database refuses are quarantined at their place
    let (appended, refused) = append_salvaging(&tx, &batch.events).await?;
    let mut rejects = batch.rejects.clone();
    for r in refused {
        let Some(&(index, offset)) = batch.places.get(r.index) else {
            continue;
        };
        tracing::warn!(partition = %parts[index].at, offset, sqlstate = %r.code, "the database refused an event: quarantined");
        rejects.entry(index).or_default().push(Rejection {
            line: u64::try_from(offset).unwrap_or_default(),
            reason: r.reason,
            raw: batch.events.get(r.index).map(render).unwrap_or_default(),
        });
    }
    let mut rejected = 0;
    for (index, list) in &rejects {
        let part = &parts[*index];
        rejected += store_rejections(&tx, list, &part.file, &part.digest).await?;
    }
    if let Err(moved) = offsets::save(&tx, group, &batch.moves).await? {
        return Err(StreamError::Moved(moved));
    }
    tx.commit().await?;
    Ok((appended, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(index: usize, offsets: std::ops::Range<i64>) -> Fetched {
        let records = offsets
            .map(|offset| rskafka::record::RecordAndOffset {
                record: rskafka::record::Record {
                    key: None,
                    value: Some(b"{}".to_vec()),
                    headers: BTreeMap::new(),
                    timestamp: Utc::now(),
                },
                offset,
            })
            .collect();
        Fetched {
            index,
            generation: 0,
            records,
            high_watermark: 100,
        }
    }

    fn shape(batch: &[Fetched]) -> Vec<(usize, Vec<i64>)> {
        batch
            .iter()
            .map(|f| (f.index, f.records.iter().map(|r| r.offset).collect()))
            .collect()
    }

    #[test]
    fn a_batch_takes_whole_fetches_up_to_its_size() {
        let mut pending: VecDeque<Fetched> = [
            fetched(0, 0..5),
            fetched(1, 0..0),
            fetched(1, 10..13),
            fetched(0, 5..6),
        ]
        .into();
        // one fetch larger than the batch goes whole
        assert_eq!(
            shape(&take_batch(&mut pending, 3)),
            [(0, vec![0, 1, 2, 3, 4])]
        );
        assert_eq!(
            shape(&take_batch(&mut pending, 3)),
            [(1, vec![]), (1, vec![10, 11, 12])]
        );
        assert_eq!(shape(&take_batch(&mut pending, 10)), [(0, vec![5])]);
        assert!(pending.is_empty());
        assert!(take_batch(&mut pending, 10).is_empty());
    }
}
