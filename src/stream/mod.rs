//! `dvault stream`: consume Kafka topics into the event log, exactly once.
//!
//! One fetching task per partition ([`kafka`]) hands records to the writer here,
//! which turns them into events ([`message`]) and writes each batch in one
//! transaction: the events, the rejections of the bad records (at their topic,
//! partition and offset) and the partitions' next offsets ([`offsets`]). So a crash at
//! any point leaves the log and the offsets agreeing, and the next start goes on from
//! the stored offsets: nothing lost, nothing twice (the log's `(source, id)` rule is
//! the second guard). A session advisory lock keeps one consumer per group.

pub mod kafka;
pub mod message;
pub mod offsets;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::daemon::shutdown::Shutdown;
use crate::events::ingest::{Rejection, store_rejections, thousands};
use crate::events::{
    APPEND_ATTEMPTS, Appended, NewEvent, append_salvaging, deadlock_pause, is_deadlock, render,
};
use kafka::{FetchOptions, Fetched, KafkaError, StartAt};
use message::{Message, Spec};
use offsets::{Move, TopicPartition};

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
    /// Records per transaction, about (whole fetches: see [`take_batch`]).
    pub batch_size: usize,
    pub fetch: FetchOptions,
    /// Longest pause between attempts to reach a lost broker.
    pub max_backoff: Duration,
    /// Stop once every partition is consumed up to its end (as last fetched).
    pub exit_at_end: bool,
}

/// What a `dvault stream` run did.
#[derive(Debug, Clone, Default)]
pub struct StreamSummary {
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
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("writing to the event log failed: {}", crate::db::Shown(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("{0}; stopped without storing the batch in hand")]
    Moved(String),
}

/// The state of one partition as the writer sees it.
struct Partition {
    at: TopicPartition,
    /// What `ops.stream_offsets` holds (`None`: no row yet).
    stored: Option<i64>,
    /// Every record before it is in the log or quarantined (committed).
    next: i64,
    /// The last high watermark a fetch reported (`None`: no fetch yet).
    high_watermark: Option<i64>,
    /// `event_log.rejected.file` and `input_digest` of its rejections.
    file: String,
    digest: [u8; 32],
}

impl Partition {
    fn new(at: TopicPartition, stored: Option<i64>, next: i64) -> Partition {
        let mut h = Sha256::new();
        for part in ["kafka", &at.topic, &at.partition.to_string()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        Partition {
            file: format!("kafka:{at}"),
            digest: h.finalize().into(),
            at,
            stored,
            next,
            high_watermark: None,
        }
    }

    fn caught_up(&self) -> bool {
        self.high_watermark.is_some_and(|hw| self.next >= hw)
    }
}

/// The advisory lock key of a group's consumer.
fn lock_key(group: &str) -> String {
    format!("dvault stream {group}")
}

/// Consume until stopped (or, with `exit_at_end`, caught up). `client` holds the
/// group's lock for the run and writes every batch.
pub async fn run(
    client: &mut Client,
    opts: &StreamOptions,
    shutdown: Shutdown,
) -> Result<StreamSummary, StreamError> {
    let started = Instant::now();
    let key = lock_key(&opts.group);
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await?
        .get(0);
    if !locked {
        tracing::warn!(
            group = %opts.group,
            "another dvault stream consumes this group: waiting for it to stop"
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
        tokio::select! {
            r = client.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &params) => { r?; }
            _ = shutdown.wait() => return Ok(StreamSummary::default()),
        }
    }
    let kafka_client = kafka::connect(&opts.brokers, opts.max_backoff).await?;
    let places = kafka::partitions(&kafka_client, &opts.topics).await?;
    let stored = offsets::load(&*client, &opts.group).await?;
    let (tx, mut rx) = mpsc::channel(2 * places.len() + 2);
    let mut parts = Vec::with_capacity(places.len());
    let mut fetchers = Vec::with_capacity(places.len());
    for (index, at) in places.into_iter().enumerate() {
        let pc = Arc::new(kafka::partition_client(&kafka_client, &at).await?);
        let saved = stored.get(&at).copied();
        let next = match saved {
            Some(n) => n,
            None => kafka::offset_at(&pc, &at, opts.start_at).await?,
        };
        tracing::info!(partition = %at, next, stored = saved.is_some(), "consuming");
        fetchers.push(kafka::spawn_fetcher(
            index,
            at.clone(),
            pc,
            next,
            opts.fetch,
            tx.clone(),
        ));
        parts.push(Partition::new(at, saved, next));
    }
    drop(tx);
    let mut summary = StreamSummary {
        partitions: parts.len(),
        ..StreamSummary::default()
    };
    let outcome = consume(client, opts, &shutdown, &mut rx, &mut parts, &mut summary).await;
    for f in fetchers {
        f.abort();
    }
    summary.elapsed = started.elapsed();
    outcome.map(|()| summary)
}

async fn consume(
    client: &mut Client,
    opts: &StreamOptions,
    shutdown: &Shutdown,
    rx: &mut mpsc::Receiver<Result<Fetched, KafkaError>>,
    parts: &mut [Partition],
    summary: &mut StreamSummary,
) -> Result<(), StreamError> {
    // fetched and not written yet, in arrival order (a partition's records in order)
    let mut pending: VecDeque<Fetched> = VecDeque::new();
    let size = opts.batch_size.max(1);
    loop {
        if shutdown.requested()
            || (opts.exit_at_end && pending.is_empty() && parts.iter().all(Partition::caught_up))
        {
            return Ok(());
        }
        if pending.is_empty() {
            let first = tokio::select! {
                item = rx.recv() => item,
                _ = shutdown.wait() => return Ok(()),
            };
            let Some(first) = first else {
                return Ok(());
            };
            pending.push_back(first?);
        }
        // what is already fetched, up to a batch
        let mut waiting: usize = pending.iter().map(|f| f.records.len()).sum();
        while waiting < size {
            match rx.try_recv() {
                Ok(item) => {
                    let item = item?;
                    waiting += item.records.len();
                    pending.push_back(item);
                }
                Err(_) => break,
            }
        }
        let fetched = take_batch(&mut pending, size);
        let records: usize = fetched.iter().map(|f| f.records.len()).sum();
        for f in &fetched {
            let part = &mut parts[f.index];
            part.high_watermark = Some(f.high_watermark);
            if f.records.is_empty() && part.stored.is_some() {
                // nothing new to consume, but the lag shown should be current
                offsets::note_high_watermark(&*client, &opts.group, &part.at, f.high_watermark)
                    .await?;
            }
        }
        if records == 0 {
            continue;
        }
        let batch = Batch::of(&fetched, parts, &opts.spec);
        let span = tracing::info_span!("stream batch", records, inserted = tracing::field::Empty);
        let (appended, rejected) = write(client, &opts.group, &batch, parts, &span).await?;
        for m in &batch.moves {
            if let Some(p) = parts.iter_mut().find(|p| p.at == m.at) {
                p.stored = Some(m.to);
                p.next = m.to;
            }
        }
        summary.batches += 1;
        summary.records += records as u64;
        summary.inserted += appended.inserted;
        summary.duplicates += appended.duplicates;
        summary.rejected += rejected;
        span.record("inserted", appended.inserted);
        tracing::info!(
            parent: &span,
            records,
            inserted = appended.inserted,
            duplicates = appended.duplicates,
            rejected,
            "batch committed"
        );
    }
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
