//! One `dvault stream` process at work: the partitions it knows and holds, their
//! fetchers, and the loop that writes what they fetch, batch by batch, looking again
//! every `--refresh-secs` at the topics' partitions and at the group's processes to
//! take its share and let go of the rest ([`super::members`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::kafka::{self, FetchItem, Fetched, KafkaError};
use super::offsets::{self, TopicPartition};
use super::{Batch, StreamError, StreamOptions, StreamSummary, members, take_batch, write};
use crate::ops::shutdown::Shutdown;

/// The state of one partition as the writer sees it.
pub(super) struct Partition {
    pub(super) at: TopicPartition,
    /// What `ops.stream_offsets` holds (`None`: no row yet), as of the taking.
    pub(super) stored: Option<i64>,
    /// Every record before it is in the log or quarantined (committed).
    next: i64,
    /// The last high watermark a fetch reported (`None`: no fetch yet).
    high_watermark: Option<i64>,
    /// `event_log.rejected.file` and `input_digest` of its rejections.
    pub(super) file: String,
    pub(super) digest: [u8; 32],
    /// Its fetcher, while this process holds the partition's lock.
    fetcher: Option<JoinHandle<()>>,
    /// Counts the takings: a fetch of an earlier one is dropped.
    generation: u64,
    /// Another process of the group held it at the last refresh.
    theirs: bool,
    /// Taken at some time of this run.
    ever: bool,
}

impl Partition {
    fn new(at: TopicPartition) -> Partition {
        let mut h = Sha256::new();
        for part in ["kafka", &at.topic, &at.partition.to_string()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        Partition {
            file: format!("kafka:{at}"),
            digest: h.finalize().into(),
            at,
            stored: None,
            next: 0,
            high_watermark: None,
            fetcher: None,
            generation: 0,
            theirs: false,
            ever: false,
        }
    }

    fn held(&self) -> bool {
        self.fetcher.is_some()
    }

    fn caught_up(&self) -> bool {
        self.high_watermark.is_some_and(|hw| self.next >= hw)
    }

    /// Stop fetching; what was fetched and not written is dropped (its generation).
    fn drop_fetcher(&mut self) {
        if let Some(f) = self.fetcher.take() {
            f.abort();
        }
        self.generation += 1;
        self.high_watermark = None;
    }
}

/// One process of a group: its partitions, their fetchers, and the writer.
pub(super) struct Consumer<'a> {
    client: &'a mut Client,
    opts: &'a StreamOptions,
    kafka: rskafka::client::Client,
    /// Its member slot.
    slot: i32,
    /// Every partition of the topics known so far (in the order found), taken or not.
    parts: Vec<Partition>,
    /// Given to each fetcher.
    tx: mpsc::Sender<FetchItem>,
    /// What the fetchers fetched.
    rx: mpsc::Receiver<FetchItem>,
}

impl<'a> Consumer<'a> {
    pub(super) fn new(
        client: &'a mut Client,
        opts: &'a StreamOptions,
        kafka: rskafka::client::Client,
        slot: i32,
        places: Vec<TopicPartition>,
    ) -> Consumer<'a> {
        // two fetches in hand per partition, more for those found later
        let (tx, rx) = mpsc::channel(2 * places.len() + 16);
        Consumer {
            client,
            opts,
            kafka,
            slot,
            parts: places.into_iter().map(Partition::new).collect(),
            tx,
            rx,
        }
    }

    /// Partitions consumed at some time of the run.
    pub(super) fn taken(&self) -> usize {
        self.parts.iter().filter(|p| p.ever).count()
    }

    /// Look again at the topics' partitions and the group's processes: let go of the
    /// partitions that are now another's share, take those of this one's share no one
    /// holds. Kafka out of reach is waited out (a warning); the database is not.
    async fn refresh(&mut self) -> Result<(), StreamError> {
        match kafka::partitions(&self.kafka, &self.opts.topics).await {
            Ok(places) => {
                for at in places {
                    if !self.parts.iter().any(|p| p.at == at) {
                        tracing::info!(partition = %at, "a new partition");
                        self.parts.push(Partition::new(at));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the partitions of the topics: trying again at the next refresh")
            }
        }
        let opts = self.opts;
        let group = &opts.group;
        let all: Vec<TopicPartition> = self.parts.iter().map(|p| p.at.clone()).collect();
        let live = members::members(&*self.client, group, &opts.topics).await?;
        let mine = members::share(&all, &live, self.slot);
        // let go first: the member whose share they are now takes them at its refresh
        for (p, &keep) in self.parts.iter_mut().zip(&mine) {
            if p.held() && !keep {
                p.drop_fetcher();
                members::let_go(&*self.client, group, &p.at).await?;
                tracing::info!(partition = %p.at, members = live.len(), "letting the partition go to another process of the group");
            }
        }
        let mut taken = Vec::new();
        for (index, &take) in mine.iter().enumerate() {
            let p = &self.parts[index];
            if take && !p.held() && members::try_take(&*self.client, group, &p.at).await? {
                taken.push(index);
            }
        }
        if !taken.is_empty() {
            // where they stand now: another process may have moved them
            let stored: HashMap<TopicPartition, i64> = offsets::load(&*self.client, group).await?;
            for index in taken {
                let at = self.parts[index].at.clone();
                if let Err(e) = self.start(index, stored.get(&at).copied()).await {
                    members::let_go(&*self.client, group, &at).await?;
                    if !e.is_unreachable() {
                        return Err(e.into());
                    }
                    tracing::warn!(partition = %at, error = %e, "cannot start fetching the partition: trying again at the next refresh");
                }
            }
        }
        let others = members::held_by_others(&*self.client, group, &all).await?;
        for (p, theirs) in self.parts.iter_mut().zip(others) {
            p.theirs = theirs;
        }
        Ok(())
    }

    /// Start fetching partition `index` (its lock held) from `saved`, else from
    /// `--start-at`.
    async fn start(&mut self, index: usize, saved: Option<i64>) -> Result<(), KafkaError> {
        let at = self.parts[index].at.clone();
        let pc = Arc::new(kafka::partition_client(&self.kafka, &at).await?);
        let next = match saved {
            Some(n) => n,
            None => kafka::offset_at(&pc, &at, self.opts.start_at).await?,
        };
        tracing::info!(partition = %at, next, stored = saved.is_some(), "consuming");
        let p = &mut self.parts[index];
        p.generation += 1;
        p.stored = saved;
        p.next = next;
        p.high_watermark = None;
        p.theirs = false;
        p.ever = true;
        p.fetcher = Some(kafka::spawn_fetcher(
            index,
            p.generation,
            at,
            pc,
            next,
            self.opts.fetch,
            kafka::retry_round(self.opts.max_backoff) + self.opts.fetch.max_wait,
            self.tx.clone(),
        ));
        Ok(())
    }

    /// A fetch of a partition still held by the taking that fetched it, else `None`;
    /// a fetcher's failure of the current taking stops the stream.
    fn accept(&self, item: FetchItem) -> Result<Option<Fetched>, StreamError> {
        let current = |index: usize, generation: u64| {
            self.parts
                .get(index)
                .is_some_and(|p| p.held() && p.generation == generation)
        };
        match item {
            Ok(f) if current(f.index, f.generation) => Ok(Some(f)),
            Err(e) if current(e.index, e.generation) => Err(e.error.into()),
            _ => Ok(None),
        }
    }

    /// Every partition consumed to its end as last fetched, or another process's.
    fn done(&self) -> bool {
        self.parts
            .iter()
            .all(|p| if p.held() { p.caught_up() } else { p.theirs })
    }

    /// Stop the fetchers and let go of the locks (the session's end would too; the
    /// caller may keep using it).
    pub(super) async fn leave(&mut self) {
        for p in &mut self.parts {
            if p.held() {
                p.drop_fetcher();
                let _ = members::let_go(&*self.client, &self.opts.group, &p.at).await;
            }
        }
        let _ = members::leave(
            &*self.client,
            &self.opts.group,
            &self.opts.topics,
            self.slot,
        )
        .await;
    }

    pub(super) async fn consume(
        &mut self,
        shutdown: &Shutdown,
        summary: &mut StreamSummary,
    ) -> Result<(), StreamError> {
        // fetched and not written yet, in arrival order (a partition's records in order)
        let mut pending: VecDeque<Fetched> = VecDeque::new();
        let size = self.opts.batch_size.max(1);
        let mut next_refresh = Instant::now();
        loop {
            if shutdown.requested() {
                return Ok(());
            }
            if Instant::now() >= next_refresh {
                self.refresh().await?;
                next_refresh = Instant::now() + self.opts.refresh;
                // fetches of partitions let go are not written
                pending.retain(|f| {
                    self.parts
                        .get(f.index)
                        .is_some_and(|p| p.held() && p.generation == f.generation)
                });
            }
            if self.opts.exit_at_end && pending.is_empty() && self.done() {
                return Ok(());
            }
            if pending.is_empty() {
                let item = tokio::select! {
                    item = self.rx.recv() => item,
                    _ = shutdown.wait() => return Ok(()),
                    _ = tokio::time::sleep_until(next_refresh.into()) => continue,
                };
                // the writer holds a sender: the channel never closes under it
                let Some(item) = item else {
                    return Ok(());
                };
                match self.accept(item)? {
                    Some(f) => pending.push_back(f),
                    None => continue,
                }
            }
            self.fill(&mut pending, size)?;
            let fetched = take_batch(&mut pending, size);
            let records: usize = fetched.iter().map(|f| f.records.len()).sum();
            self.note_high_watermarks(&fetched).await?;
            if records == 0 {
                continue;
            }
            self.write_batch(&fetched, records, summary).await?;
        }
    }

    /// Add what is already fetched to `pending`, up to a batch.
    fn fill(&mut self, pending: &mut VecDeque<Fetched>, size: usize) -> Result<(), StreamError> {
        let mut waiting: usize = pending.iter().map(|f| f.records.len()).sum();
        while waiting < size {
            match self.rx.try_recv() {
                Ok(item) => {
                    if let Some(f) = self.accept(item)? {
                        waiting += f.records.len();
                        pending.push_back(f);
                    }
                }
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Remember each partition's high watermark as fetched.
    async fn note_high_watermarks(&mut self, fetched: &[Fetched]) -> Result<(), StreamError> {
        let group = &self.opts.group;
        for f in fetched {
            let part = &mut self.parts[f.index];
            part.high_watermark = Some(f.high_watermark);
            if f.records.is_empty() && part.stored.is_some() {
                // nothing new to consume, but the lag shown should be current
                offsets::note_high_watermark(&*self.client, group, &part.at, f.high_watermark)
                    .await?;
            }
        }
        Ok(())
    }

    /// Write a batch of `records` records and move the partitions' offsets with it,
    /// in one transaction.
    async fn write_batch(
        &mut self,
        fetched: &[Fetched],
        records: usize,
        summary: &mut StreamSummary,
    ) -> Result<(), StreamError> {
        let opts = self.opts;
        let group = &opts.group;
        let batch = Batch::of(fetched, &self.parts, &opts.spec);
        let span = tracing::info_span!("stream batch", records, inserted = tracing::field::Empty);
        let (appended, rejected) = write(self.client, group, &batch, &self.parts, &span).await?;
        for m in &batch.moves {
            if let Some(p) = self.parts.iter_mut().find(|p| p.at == m.at) {
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
        Ok(())
    }
}
