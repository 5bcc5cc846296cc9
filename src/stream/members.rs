//! How the `dvault stream` processes of one group share its partitions, through
//! PostgreSQL rather than Kafka's group protocol (which rskafka does not speak): each
//! process holds a member slot (a session advisory lock), the live slots are read from
//! `pg_locks`, and the partitions, in topic and partition order, are dealt out by slot
//! rank ([`share`]). A process fetches and writes a partition only while it holds that
//! partition's own advisory lock, so two never consume one partition at once; the
//! offsets' row lock and start check in each batch's transaction
//! ([`super::offsets::save`]) stay the guard behind it. Session locks end with the
//! session: a process killed lets go of its partitions, and the others take them at
//! their next refresh.

use tokio_postgres::GenericClient;

use super::offsets::TopicPartition;

/// Most processes one group can have (slots tried in turn).
const MAX_MEMBERS: i32 = 1024;

/// The first key of the member slots of the processes of `group` that consume
/// `topics` (the second is the slot). Processes of one group given other topics are
/// not counted as members of this one: each set deals out its own partitions, so none
/// is left to a member that does not know it; a partition two sets know is consumed by
/// whichever takes its lock.
fn members_key(group: &str, topics: &[String]) -> String {
    let mut topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    topics.sort_unstable();
    topics.dedup();
    format!("dvault stream {group} members of {}", topics.join(","))
}

/// The first key of a partition's lock (the second is the partition).
fn partition_key(group: &str, topic: &str) -> String {
    format!("dvault stream {group} topic {topic}")
}

/// The current database's advisory locks of the two-key form, as `pg_locks` shows
/// them (`objsubid = 2`: the key pair sits in `classid` and `objid`).
const ADVISORY: &str = "l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/// Take the lowest free member slot of `group` (for `topics`) on this session.
pub async fn join(
    client: &impl GenericClient,
    group: &str,
    topics: &[String],
) -> Result<i32, JoinError> {
    let key = members_key(group, topics);
    for slot in 0..MAX_MEMBERS {
        let taken: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext($1), $2)",
                &[&key, &slot],
            )
            .await?
            .try_get(0)?;
        if taken {
            return Ok(slot);
        }
    }
    Err(JoinError::Full(MAX_MEMBERS))
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{0} dvault stream processes already consume this group")]
    Full(i32),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// The live member slots of `group` (for `topics`), ascending.
pub async fn members(
    client: &impl GenericClient,
    group: &str,
    topics: &[String],
) -> Result<Vec<i32>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT DISTINCT l.objid::int8 FROM pg_locks l
          WHERE {ADVISORY} AND l.classid = hashtext($1)::oid ORDER BY 1"
    );
    let mut live = Vec::new();
    for r in client.query(&sql, &[&members_key(group, topics)]).await? {
        live.extend(i32::try_from(r.try_get::<_, i64>(0)?).ok());
    }
    Ok(live)
}

/// Which of `parts` (sorted or not) this member should consume: the partitions in
/// topic and partition order, dealt round-robin to the live slots in ascending order.
/// A member missing from `live` (it cannot be: it holds its slot) counts as the only
/// one.
pub fn share(parts: &[TopicPartition], live: &[i32], me: i32) -> Vec<bool> {
    let (count, rank) = match live.iter().position(|&s| s == me) {
        Some(rank) => (live.len(), rank),
        None => (1, 0),
    };
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| parts[a].cmp(&parts[b]));
    let mut mine = vec![false; parts.len()];
    for (place, index) in order.into_iter().enumerate() {
        mine[index] = place % count == rank;
    }
    mine
}

/// Take partition `at`'s lock if no one holds it.
pub async fn try_take(
    client: &impl GenericClient,
    group: &str,
    at: &TopicPartition,
) -> Result<bool, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext($1), $2)",
            &[&partition_key(group, &at.topic), &at.partition],
        )
        .await?
        .try_get(0)
}

/// Let go of partition `at`'s lock.
pub async fn let_go(
    client: &impl GenericClient,
    group: &str,
    at: &TopicPartition,
) -> Result<(), tokio_postgres::Error> {
    client
        .query_one(
            "SELECT pg_advisory_unlock(hashtext($1), $2)",
            &[&partition_key(group, &at.topic), &at.partition],
        )
        .await?;
    Ok(())
}

/// Let go of the member slot.
pub async fn leave(
    client: &impl GenericClient,
    group: &str,
    topics: &[String],
    slot: i32,
) -> Result<(), tokio_postgres::Error> {
    client
        .query_one(
            "SELECT pg_advisory_unlock(hashtext($1), $2)",
            &[&members_key(group, topics), &slot],
        )
        .await?;
    Ok(())
}

/// Which of `parts` another session holds the lock of.
pub async fn held_by_others(
    client: &impl GenericClient,
    group: &str,
    parts: &[TopicPartition],
) -> Result<Vec<bool>, tokio_postgres::Error> {
    let keys: Vec<String> = parts
        .iter()
        .map(|p| partition_key(group, &p.topic))
        .collect();
    let numbers: Vec<i32> = parts.iter().map(|p| p.partition).collect();
    let sql = format!(
        "SELECT k.i FROM unnest($1::text[], $2::integer[]) WITH ORDINALITY AS k(key, part, i)
          WHERE EXISTS (SELECT FROM pg_locks l
                         WHERE {ADVISORY} AND l.pid <> pg_backend_pid()
                           AND l.classid = hashtext(k.key)::oid AND l.objid = k.part::oid)"
    );
    let mut held = vec![false; parts.len()];
    for row in client.query(&sql, &[&keys, &numbers]).await? {
        let i: i64 = row.try_get(0)?;
        if let Some(h) = usize::try_from(i - 1).ok().and_then(|i| held.get_mut(i)) {
            *h = true;
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    #[test]
    fn the_members_of_a_group_are_counted_per_set_of_topics() {
        let t = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            members_key("g", &t(&["b", "a", "b"])),
            members_key("g", &t(&["a", "b"]))
        );
        assert_ne!(
            members_key("g", &t(&["a"])),
            members_key("g", &t(&["a", "b"]))
        );
        assert_ne!(members_key("g", &t(&["a"])), members_key("h", &t(&["a"])));
    }

    #[test]
    fn partitions_are_dealt_round_robin_in_topic_and_partition_order() {
        // listed out of order (a partition added later comes last)
        let parts = [tp("b", 0), tp("a", 1), tp("a", 0), tp("a", 2)];
        // order: a/0 a/1 a/2 b/0
        assert_eq!(share(&parts, &[3, 7], 3), [false, false, true, true]);
        assert_eq!(share(&parts, &[3, 7], 7), [true, true, false, false]);
        assert_eq!(share(&parts, &[7], 7), [true; 4]);
        // more members than partitions: the last takes none
        let three = share(&parts[..2], &[0, 1, 2], 2);
        assert_eq!(three, [false, false]);
        // a member the list does not show takes everything rather than nothing
        assert_eq!(share(&parts, &[1], 5), [true; 4]);
    }
}
