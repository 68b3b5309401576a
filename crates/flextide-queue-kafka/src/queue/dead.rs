//! Dead letters on the topic `ftq.<name>.dlq` (one partition): a dead
//! letter is a record there; replaying or purging writes a *removal*
//! record (the id as its key, or a purge of everything before it), since a
//! Kafka topic cannot delete records in its middle. Listing reads the
//! topic from its start and applies the removals.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flextide_queue_core::{
    DeadLetter, Message, MessageId, Replay, Result,
    backend::{foreign_id, system_time_from_millis},
};
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};

use super::{KafkaQueue, admin, push};
use crate::{BACKEND, codec, error};

/// Writes a dead-letter record.
pub(crate) async fn store(q: &KafkaQueue, record: &codec::Record) -> Result<()> {
    q.engine.ensure_topics().await?;
    push::send(&q.client, &q.dlq, record).await.map(|_| ())
}

/// A dead letter as read back: its offset and raw record.
struct Stored {
    raw: codec::Raw,
}

impl Stored {
    fn id(&self) -> String {
        match codec::decode(&self.raw) {
            Ok(d) => d.message.id.as_str().to_owned(),
            Err(_) => foreign_id(BACKEND, format_args!("dlq-{}", self.raw.offset))
                .as_str()
                .to_owned(),
        }
    }

    fn to_dead_letter(&self) -> DeadLetter {
        let text = |name: &str| {
            self.raw
                .header(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        let reason = text(codec::REASON).unwrap_or_default();
        let at = text(codec::DEAD_AT)
            .and_then(|t| t.parse().ok())
            .map(system_time_from_millis)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match codec::decode(&self.raw) {
            Ok(d) => DeadLetter::new(d.message, reason, d.spent, at),
            // Kept as it came: its body as the payload.
            Err(_) => DeadLetter::new(
                Message::from_parts(
                    foreign_id(BACKEND, format_args!("dlq-{}", self.raw.offset)),
                    self.raw.value.clone(),
                ),
                reason,
                0,
                at,
            ),
        }
    }

    /// The record to put back on the queue: as it was pushed, attempts
    /// reset, the dead-letter headers gone.
    fn replay_record(&self) -> codec::Record {
        let mut r = self.raw.to_record();
        r.headers.retain(|(k, _)| {
            k != codec::REASON && k != codec::DEAD_AT && k != codec::SPENT && k != codec::NOT_BEFORE
        });
        r
    }
}

/// Every dead letter still there, oldest first.
async fn read_all(q: &KafkaQueue) -> Result<Vec<Stored>> {
    let Some(_) = admin::partitions(&q.client, &q.dlq).await? else {
        return Ok(Vec::new());
    };
    let consumer: BaseConsumer = q
        .client
        .base_config()
        .set("group.id", format!("{}.reader", q.dlq))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| error::map("create dead-letter reader", e))?;
    let timeout = q.client.config.operation_timeout;
    let topic = q.dlq.clone();
    let records = error::blocking(move || {
        let (lo, hi) = consumer
            .fetch_watermarks(&topic, 0, timeout)
            .map_err(|e| error::map("dead-letter watermarks", e))?;
        let mut out = Vec::new();
        if hi <= lo {
            return Ok(out);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(lo))
            .map_err(|e| error::map("assign", e))?;
        consumer.assign(&tpl).map_err(|e| error::map("assign", e))?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let Some(got) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = got.map_err(|e| error::map("read dead letters", e))?;
            let raw = codec::Raw::of(&m);
            let last = raw.offset + 1 >= hi;
            out.push(raw);
            if last {
                return Ok(out);
            }
        }
        Err(flextide_queue_core::QueueError::Timeout {
            backend: BACKEND,
            operation: "read dead letters",
            after: timeout,
        })
    })
    .await?;
    // Apply the removals in offset order.
    let mut live: Vec<Stored> = Vec::new();
    for raw in records {
        if raw.header(codec::PURGED_BEFORE).is_some() {
            live.clear();
        } else if raw.header(codec::REMOVED).is_some() {
            let id = raw.key.clone().unwrap_or_default();
            let id = String::from_utf8_lossy(&id).into_owned();
            live.retain(|s| s.id() != id);
        } else {
            live.push(Stored { raw });
        }
    }
    Ok(live)
}

pub(crate) async fn list(q: &KafkaQueue, limit: usize) -> Result<Vec<DeadLetter>> {
    Ok(read_all(q)
        .await?
        .iter()
        .take(limit)
        .map(Stored::to_dead_letter)
        .collect())
}

/// How many dead letters there are.
pub(crate) async fn count(q: &KafkaQueue) -> Result<u64> {
    Ok(read_all(q).await?.len() as u64)
}

pub(crate) async fn replay(q: &KafkaQueue, which: Replay) -> Result<u64> {
    let all = read_all(q).await?;
    let chosen: Vec<&Stored> = match &which {
        Replay::All => all.iter().collect(),
        Replay::Oldest(n) => all.iter().take(*n).collect(),
        Replay::Ids(ids) => all
            .iter()
            .filter(|s| ids.iter().any(|i| i.as_str() == s.id()))
            .collect(),
    };
    let mut moved = 0;
    for s in chosen {
        // Back on the queue first: a crash between the two writes leaves a
        // copy in both places, never in neither.
        push::send(&q.client, &q.topic, &s.replay_record()).await?;
        remove(q, &s.id(), "replayed").await?;
        moved += 1;
    }
    Ok(moved)
}

/// Writes the removal record of the dead letters with `id`.
async fn remove(q: &KafkaQueue, id: &str, why: &str) -> Result<()> {
    let removal = codec::Record {
        key: Some(id.as_bytes().to_vec()),
        value: Bytes::new(),
        headers: vec![(codec::REMOVED.to_owned(), why.as_bytes().to_vec())],
    };
    push::send(&q.client, &q.dlq, &removal).await.map(|_| ())
}

/// Deletes the dead letters with these ids: a removal record each (the
/// topic keeps the records until its retention ends; listing skips them).
pub(crate) async fn delete(q: &KafkaQueue, ids: &[MessageId]) -> Result<u64> {
    let all = read_all(q).await?;
    let mut deleted = 0;
    let mut done: Vec<String> = Vec::new();
    for id in ids {
        let id = id.as_str();
        if done.iter().any(|d| d == id) {
            continue;
        }
        let present = all.iter().filter(|s| s.id() == id).count() as u64;
        if present > 0 {
            remove(q, id, "deleted").await?;
            deleted += present;
            done.push(id.to_owned());
        }
    }
    Ok(deleted)
}

pub(crate) async fn purge(q: &KafkaQueue) -> Result<u64> {
    let n = count(q).await?;
    if n > 0 {
        let purge = codec::Record {
            key: None,
            value: Bytes::new(),
            headers: vec![(codec::PURGED_BEFORE.to_owned(), b"purged".to_vec())],
        };
        push::send(&q.client, &q.dlq, &purge).await?;
    }
    Ok(n)
}
