//! `ops.stream_offsets`: where a consumer group stands in each partition. Read once
//! at start; written in the transaction that appends the records consumed, after a
//! check that no one else moved them meanwhile.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// A partition's offsets moving in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub at: TopicPartition,
    /// The stored next offset this consumer started the batch from (`None`: none was
    /// stored yet).
    pub from: Option<i64>,
    pub to: i64,
    pub high_watermark: i64,
}

/// The stored next offsets of `group`.
pub async fn load(
    client: &impl GenericClient,
    group: &str,
) -> Result<HashMap<TopicPartition, i64>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT topic, partition, next_offset FROM ops.stream_offsets
              WHERE consumer_group = $1",
            &[&group],
        )
        .await?;
    rows.iter().map(stored_offset).collect()
}

/// A row of (topic, partition, next_offset), as both readers select it; an
/// unexpected type or NULL is an error, not a panic.
fn stored_offset(r: &tokio_postgres::Row) -> Result<(TopicPartition, i64), tokio_postgres::Error> {
    Ok((
        TopicPartition {
            topic: r.try_get(0)?,
            partition: r.try_get(1)?,
        },
        r.try_get(2)?,
    ))
}

/// Store the moves of one batch, in the caller's transaction. The rows are locked
/// first and compared with where the batch started: `Ok(Err(place))` names a
/// partition another consumer of the group moved meanwhile (the caller rolls back).
pub async fn save(
    tx: &impl GenericClient,
    group: &str,
    moves: &[Move],
) -> Result<Result<(), String>, tokio_postgres::Error> {
    if moves.is_empty() {
        return Ok(Ok(()));
    }
    let topics: Vec<&str> = moves.iter().map(|m| m.at.topic.as_str()).collect();
    let partitions: Vec<i32> = moves.iter().map(|m| m.at.partition).collect();
    let stored: HashMap<TopicPartition, i64> = tx
        .query(
            "SELECT o.topic, o.partition, o.next_offset
               FROM ops.stream_offsets o
               JOIN unnest($2::text[], $3::integer[]) AS m(topic, partition)
                 ON (o.topic, o.partition) = (m.topic, m.partition)
              WHERE o.consumer_group = $1
              ORDER BY 1, 2
                FOR UPDATE OF o",
            &[&group, &topics, &partitions],
        )
        .await?
        .iter()
        .map(stored_offset)
        .collect::<Result<_, _>>()?;
    for m in moves {
        let now = stored.get(&m.at).copied();
        if now != m.from {
            return Ok(Err(format!(
                "partition {} of group \"{group}\" was moved by another consumer (to offset {}, this one started from {})",
                m.at,
                now.map_or("none".into(), |o| o.to_string()),
                m.from.map_or("none".into(), |o| o.to_string()),
            )));
        }
    }
    let next: Vec<i64> = moves.iter().map(|m| m.to).collect();
    let high: Vec<i64> = moves.iter().map(|m| m.high_watermark).collect();
    tx.execute(
        "INSERT INTO ops.stream_offsets AS o
                (consumer_group, topic, partition, next_offset, high_watermark)
         SELECT $1, topic, partition, next_offset, high_watermark
           FROM unnest($2::text[], $3::integer[], $4::bigint[], $5::bigint[])
                AS m(topic, partition, next_offset, high_watermark)
         ON CONFLICT (consumer_group, topic, partition) DO UPDATE
            SET next_offset = EXCLUDED.next_offset,
                high_watermark = EXCLUDED.high_watermark,
                updated_at = now()",
        &[&group, &topics, &partitions, &next, &high],
    )
    .await?;
    Ok(Ok(()))
}

/// Where a group stands in a partition, as of its last batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub group: String,
    pub at: TopicPartition,
    pub next_offset: i64,
    pub high_watermark: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Lag {
    /// Records produced and not consumed yet, as of `updated_at`.
    pub fn records(&self) -> i64 {
        (self.high_watermark - self.next_offset).max(0)
    }
}

/// Every group's place in every partition, by group, topic and partition.
pub async fn lags(client: &impl GenericClient) -> Result<Vec<Lag>, tokio_postgres::Error> {
    client
        .query(
            "SELECT consumer_group, topic, partition, next_offset, high_watermark, updated_at
               FROM ops.stream_offsets ORDER BY 1, 2, 3",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Lag {
                group: r.try_get(0)?,
                at: TopicPartition {
                    topic: r.try_get(1)?,
                    partition: r.try_get(2)?,
                },
                next_offset: r.try_get(3)?,
                high_watermark: r.try_get(4)?,
                updated_at: r.try_get(5)?,
            })
        })
        .collect()
}

/// Record a partition's high watermark between batches (a fetch that brought nothing
/// new), so the lag shown stays current while nothing is consumed. A partition with no
/// row yet gets none: its first batch writes it.
pub async fn note_high_watermark(
    client: &impl GenericClient,
    group: &str,
    at: &TopicPartition,
    high_watermark: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE ops.stream_offsets SET high_watermark = $4, updated_at = now()
              WHERE (consumer_group, topic, partition) = ($1, $2, $3)
                AND high_watermark IS DISTINCT FROM $4",
            &[&group, &at.topic, &at.partition, &high_watermark],
        )
        .await?;
    Ok(())
}
