//! The Kafka side of `dvault stream`, through `rskafka` (a pure-Rust client, no
//! librdkafka): the partitions of the topics, where each one starts, and one fetching
//! task per partition that hands its records on in offset order, ahead of the writer
//! (so Kafka and PostgreSQL work at the same time). Kafka's consumer-group membership
//! is not used: the group's offsets live in the database (`ops.stream_offsets`), and
//! the consumers of a group share its partitions through PostgreSQL (see
//! [`super::members`]). A broker that cannot be reached is waited for, with a warning
//! each round of retries, never a reason to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::BackoffConfig;
use rskafka::client::error::{Error as RsError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::RecordAndOffset;
use tokio::sync::mpsc;

use super::offsets::TopicPartition;

/// Where a partition with no stored offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartAt {
    /// The oldest record the broker still keeps: the whole topic.
    Earliest,
    /// The next record produced: only what comes from now on.
    Latest,
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot reach the Kafka brokers {brokers}: {source}")]
    Connect { brokers: String, source: RsError },
    #[error("topic \"{topic}\" does not exist on the brokers (they have: {known})")]
    NoTopic { topic: String, known: String },
    #[error(
        "{at}: offset {offset} is no longer on the broker (it keeps {earliest} on): records between \
         were deleted by retention before they were consumed; to go on from {earliest}, delete the \
         group's row for this partition in ops.stream_offsets"
    )]
    Gone {
        at: TopicPartition,
        offset: i64,
        earliest: i64,
    },
    #[error(
        "{at}: offset {offset} is beyond the end of the partition (its next offset is {end}): the \
         topic was deleted and created again, or the offsets stored are another cluster's; give \
         the group a new name (--group) to consume it from its start"
    )]
    Beyond {
        at: TopicPartition,
        offset: i64,
        end: i64,
    },
    #[error(transparent)]
    TlsCa(#[from] TlsCaError),
    #[error("Kafka: {what} {at}: {source}")]
    Request {
        what: &'static str,
        at: String,
        source: RsError,
    },
}

impl KafkaError {
    /// Only the brokers out of reach: worth trying again later.
    pub fn is_unreachable(&self) -> bool {
        match self {
            KafkaError::Connect { source, .. } | KafkaError::Request { source, .. } => {
                is_unreachable(source)
            }
            _ => false,
        }
    }
}

/// SASL PLAIN credentials for the brokers; the password stays out of `Debug`.
#[derive(Clone)]
pub struct SaslPlain {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for SaslPlain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslPlain")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// A `--tls-ca` file that gives no TLS configuration.
#[derive(Debug, thiserror::Error)]
#[error("--tls-ca {path}: {reason}")]
pub struct TlsCaError {
    pub path: String,
    pub reason: String,
}

/// A TLS client configuration that trusts the CA certificates of the PEM file `path`
/// (and no other: a broker's certificate must chain to one of them and name the host
/// or IP address dvault connects to, as the metadata advertises it).
pub fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, TlsCaError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let failed = |reason: String| TlsCaError {
        path: path.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| failed(e.to_string()))? {
        let cert = cert.map_err(|e| failed(e.to_string()))?;
        roots.add(cert).map_err(|e| failed(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(failed("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// How long one round of retries of a request lasts before the caller hears of it (and
/// logs it): three of the longest pauses, at least 5 s.
pub fn retry_round(max_backoff: Duration) -> Duration {
    (max_backoff * 3).max(Duration::from_secs(5))
}

/// Whether `e` says the brokers could not be reached (or did not know a partition)
/// through a whole round of retries, or no connection could be made (refused, TLS or
/// SASL failed: rskafka does not tell these apart by type): worth waiting out, with
/// the reason in a warning, not stopping for.
pub fn is_unreachable(e: &RsError) -> bool {
    matches!(e, RsError::RetryFailed(_) | RsError::Connection(_))
}

/// Connect to the brokers, waiting (a warning each round of retries) while none
/// answers; `None` if `shutdown` came first. Every request of the client retries lost
/// connections, backing off up to `max_backoff`, for a [`retry_round`] before it fails
/// with an error [`is_unreachable`] tells.
pub async fn connect(
    brokers: &[String],
    max_backoff: Duration,
    sasl: Option<&SaslPlain>,
    tls_ca: Option<&std::path::Path>,
    shutdown: &crate::ops::shutdown::Shutdown,
) -> Result<Option<Client>, KafkaError> {
    let tls = tls_ca.map(tls_config).transpose()?;
    let backoff = BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff,
        base: 2.0,
        deadline: Some(retry_round(max_backoff)),
    };
    let since = Instant::now();
    loop {
        let mut builder = ClientBuilder::new(brokers.to_vec())
            .client_id("dvault")
            .backoff_config(backoff.clone());
        if let Some(tls) = &tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        if let Some(s) = sasl {
            builder = builder.sasl_config(SaslConfig::Plain(Credentials::new(
                s.user.clone(),
                s.password.clone(),
            )));
        }
        let built = tokio::select! {
            b = builder.build() => b,
            _ = shutdown.wait() => return Ok(None),
        };
        match built {
            Ok(client) => return Ok(Some(client)),
            Err(e) if is_unreachable(&e) => tracing::warn!(
                brokers = %brokers.join(","),
                waited_secs = since.elapsed().as_secs(),
                error = %e,
                "cannot reach the Kafka brokers: still trying"
            ),
            Err(source) => {
                return Err(KafkaError::Connect {
                    brokers: brokers.join(","),
                    source,
                });
            }
        }
    }
}

/// Every partition of `topics`, in topic order then partition order.
pub async fn partitions(
    client: &Client,
    topics: &[String],
) -> Result<Vec<TopicPartition>, KafkaError> {
    let known = client
        .list_topics()
        .await
        .map_err(|source| KafkaError::Request {
            what: "listing the topics",
            at: String::new(),
            source,
        })?;
    let mut out = Vec::new();
    for topic in topics {
        let Some(t) = known.iter().find(|t| &t.name == topic) else {
            let mut names: Vec<&str> = known.iter().map(|t| t.name.as_str()).collect();
            names.sort();
            return Err(KafkaError::NoTopic {
                topic: topic.clone(),
                known: if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                },
            });
        };
        out.extend(t.partitions.iter().map(|&partition| TopicPartition {
            topic: topic.clone(),
            partition,
        }));
    }
    Ok(out)
}

/// A client for one partition (its leader's connection).
pub async fn partition_client(
    client: &Client,
    at: &TopicPartition,
) -> Result<PartitionClient, KafkaError> {
    client
        .partition_client(at.topic.clone(), at.partition, UnknownTopicHandling::Retry)
        .await
        .map_err(|source| KafkaError::Request {
            what: "opening partition",
            at: at.to_string(),
            source,
        })
}

/// The offset `start` names in a partition. The latest is the high watermark a fetch
/// reports (tansu 0.6 answers a ListOffsets for the latest offset with the last
/// batch's first offset + 1, inside that batch).
pub async fn offset_at(
    pc: &PartitionClient,
    at: &TopicPartition,
    start: StartAt,
) -> Result<i64, KafkaError> {
    let failed = |source| KafkaError::Request {
        what: "asking the offsets of",
        at: at.to_string(),
        source,
    };
    let earliest = pc.get_offset(OffsetAt::Earliest).await.map_err(failed)?;
    match start {
        StartAt::Earliest => Ok(earliest),
        StartAt::Latest => {
            let (_, high_watermark) = pc
                .fetch_records(earliest, 1..1024, 0)
                .await
                .map_err(failed)?;
            Ok(high_watermark)
        }
    }
}

/// What one fetch of one partition brought.
#[derive(Debug)]
pub struct Fetched {
    /// The partition's index in the consumer's list.
    pub index: usize,
    /// Which taking of the partition by this consumer fetched it (a fetch of an
    /// earlier one, handed on before the partition was let go, is dropped).
    pub generation: u64,
    /// Records from the offset asked for on, in offset order (maybe none).
    pub records: Vec<RecordAndOffset>,
    /// The offset the next record produced to the partition will get.
    pub high_watermark: i64,
}

/// Why a fetcher stopped: the partition cannot be consumed on (see [`KafkaError`]).
#[derive(Debug)]
pub struct FetchFailed {
    pub index: usize,
    pub generation: u64,
    pub error: KafkaError,
}

/// What a fetcher hands the writer.
pub type FetchItem = Result<Fetched, FetchFailed>;

/// How the fetchers fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// Most bytes one fetch brings (at least one record comes whatever its size).
    pub max_bytes: i32,
    /// How long the broker may wait for a record before answering with none.
    pub max_wait: Duration,
}

/// Fetch partition `index` from `from` on, for ever, handing each fetch to `tx` (an
/// empty one too when the high watermark moved, or the first one: the writer learns
/// the lag from them). A broker that cannot be reached is tried again, with a warning
/// each `report_every` without an answer and a note once it answers. Ends when `tx`
/// closes or after sending an error.
#[allow(clippy::too_many_arguments)]
pub fn spawn_fetcher(
    index: usize,
    generation: u64,
    at: TopicPartition,
    pc: Arc<PartitionClient>,
    from: i64,
    opts: FetchOptions,
    report_every: Duration,
    tx: mpsc::Sender<FetchItem>,
) -> tokio::task::JoinHandle<()> {
    let fetcher = Fetcher {
        index,
        generation,
        at,
        pc,
        max_bytes: opts.max_bytes.max(2),
        wait_ms: i32::try_from(opts.max_wait.as_millis()).unwrap_or(i32::MAX),
        report_every,
        next: from,
        reported: None,
        lost: None,
    };
    tokio::spawn(fetcher.run(tx))
}

/// One partition's fetching task: what it fetches, and where it is.
struct Fetcher {
    index: usize,
    generation: u64,
    at: TopicPartition,
    pc: Arc<PartitionClient>,
    max_bytes: i32,
    wait_ms: i32,
    report_every: Duration,
    /// The offset the next fetch asks for.
    next: i64,
    /// The high watermark last handed on: an empty fetch that does not move it is
    /// not handed on.
    reported: Option<i64>,
    /// Since when the broker has not answered.
    lost: Option<Instant>,
}

impl Fetcher {
    async fn run(mut self, tx: mpsc::Sender<FetchItem>) {
        loop {
            let item = match self.fetch().await {
                Ok((records, high_watermark)) => match self.take(records, high_watermark) {
                    Some(item) => item,
                    None => continue,
                },
                Err(e) if is_unreachable(&e) => {
                    // the connection is retried inside the client; a whole round
                    // failed: say so and go on trying (a broker restarting, a network
                    // cut), never stop for it
                    let since = *self.lost.get_or_insert_with(Instant::now);
                    tracing::warn!(partition = %self.at, offset = self.next, waited_secs = since.elapsed().as_secs(), error = %e, "cannot fetch: the broker does not answer (or does not know the partition); still trying");
                    continue;
                }
                Err(RsError::ServerError {
                    protocol_error: ProtocolError::OffsetOutOfRange,
                    ..
                }) => Err(self.out_of_range().await),
                Err(source) => Err(KafkaError::Request {
                    what: "fetching",
                    at: format!("{} at offset {}", self.at, self.next),
                    source,
                }),
            };
            let item = item.map_err(|error| FetchFailed {
                index: self.index,
                generation: self.generation,
                error,
            });
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    }

    /// One fetch from `next` on. A lost connection is retried inside the client,
    /// connecting again with its own retries, so a fetch may wait a long time for a
    /// broker that is down: say so while it waits (the fetch itself goes on, never
    /// cut short), and once it answers again.
    async fn fetch(&mut self) -> Result<(Vec<RecordAndOffset>, i64), RsError> {
        let fetch = self
            .pc
            .fetch_records(self.next, 1..self.max_bytes, self.wait_ms);
        tokio::pin!(fetch);
        let fetched = loop {
            tokio::select! {
                fetched = &mut fetch => break fetched,
                _ = tokio::time::sleep(self.report_every) => {
                    let report_every = self.report_every;
                    let since = *self.lost.get_or_insert_with(|| {
                        Instant::now().checked_sub(report_every).unwrap_or_else(Instant::now)
                    });
                    tracing::warn!(partition = %self.at, offset = self.next, waited_secs = since.elapsed().as_secs(), "cannot fetch: the broker does not answer; still trying");
                }
            }
        };
        if let (Some(since), Ok(_)) = (self.lost, &fetched) {
            tracing::info!(partition = %self.at, offset = self.next, after_secs = since.elapsed().as_secs(), "fetching again: the broker answers");
            self.lost = None;
        }
        fetched
    }

    /// What to hand on from the records a fetch brought; `None`: nothing (no
    /// record, and the high watermark already handed on).
    fn take(
        &mut self,
        mut records: Vec<RecordAndOffset>,
        high_watermark: i64,
    ) -> Option<Result<Fetched, KafkaError>> {
        // strictly increasing from `next` on: a record before it (the start of the
        // batch that holds it) or repeated (tansu 0.6 sends the last batch again
        // after a fetch from inside a batch) is dropped
        let asked = self.next;
        let next = &mut self.next;
        records.retain(|r| {
            let keep = r.offset >= *next;
            if keep {
                *next = r.offset + 1;
            }
            keep
        });
        if let Some(first) = records.first().filter(|r| r.offset > asked) {
            tracing::debug!(partition = %self.at, from = asked, to = first.offset, "offsets not in the partition (compacted, or transaction markers)");
        }
        if records.is_empty() && high_watermark < self.next {
            // Kafka answers this with OffsetOutOfRange (see `out_of_range`), tansu
            // 0.6 with no records
            Some(Err(KafkaError::Beyond {
                at: self.at.clone(),
                offset: self.next,
                end: high_watermark,
            }))
        } else if records.is_empty() && self.reported == Some(high_watermark) {
            None
        } else {
            self.reported = Some(high_watermark);
            Some(Ok(Fetched {
                index: self.index,
                generation: self.generation,
                records,
                high_watermark,
            }))
        }
    }

    /// The partition has no record at `next`: deleted by retention (gone), or
    /// beyond its end.
    async fn out_of_range(&self) -> KafkaError {
        let earliest = self.pc.get_offset(OffsetAt::Earliest).await.unwrap_or(-1);
        if earliest >= 0 && self.next < earliest {
            KafkaError::Gone {
                at: self.at.clone(),
                offset: self.next,
                earliest,
            }
        } else {
            // beyond the end: the partition was emptied and recreated, or the
            // stored offset belongs to another cluster
            let end = offset_at(&self.pc, &self.at, StartAt::Latest)
                .await
                .unwrap_or(-1);
            KafkaError::Beyond {
                at: self.at.clone(),
                offset: self.next,
                end,
            }
        }
    }
}
