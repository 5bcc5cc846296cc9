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
    Ok(rows
        .iter()
        .map(|r| {
            (
                TopicPartition {
                    topic: r.get(0),
                    partition: r.get(1),
                },
                r.get(2),
            )
        })
        .collect())
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
        .map(|r| {
            (
                TopicPartition {
                    topic: r.get(0),
                    partition: r.get(1),
                },
                r.get(2),
            )
        })
        .collect();
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
