//! The dead-letter stream: listing (oldest first, by message get), replay
//! (republish onto the queue, then delete the dead letter), deleting chosen
//! dead letters (by their sequence in that stream) and purge.

use std::collections::HashSet;

use async_nats::jetstream::message::PublishMessage;
use flextide_queue_core::{DeadLetter, MessageId, Replay, Result};

use super::NatsQueue;
use crate::{codec, error};

impl NatsQueue {
    /// Up to `limit` dead letters, oldest first, with their sequences in the
    /// dead-letter stream.
    pub(super) async fn list_dead(&self, limit: usize) -> Result<Vec<(u64, DeadLetter)>> {
        let mut out = Vec::new();
        let mut next = 1;
        while out.len() < limit {
            let get = async {
                match self
                    .dlq
                    .raw_message_builder()
                    .sequence(next)
                    .next_by_subject(self.dlq_subject.clone())
                    .send()
                    .await
                {
                    Ok(m) => Ok(Some(m)),
                    Err(e) if error::class_of(&e) == error::Class::NotFound => Ok(None),
                    Err(e) => Err(error::map("dead-letter get", &self.name, e)),
                }
            };
            let Some(m) = error::timed("dead-letter get", self.timeout(), get).await? else {
                break;
            };
            next = m.sequence + 1;
            let stored = codec::system_time_from_nanos(m.time.unix_timestamp_nanos());
            let headers = Some(&m.headers);
            let message = codec::decode(headers, m.payload, m.sequence, stored).message;
            let (reason, attempts, at) = codec::dead_letter_fields(headers, stored);
            out.push((m.sequence, DeadLetter::new(message, reason, attempts, at)));
        }
        Ok(out)
    }

    pub(super) async fn replay(&self, which: Replay) -> Result<u64> {
        let chosen = match which {
            Replay::Oldest(n) => self.list_dead(n).await?,
            Replay::All => self.list_dead(usize::MAX).await?,
            Replay::Ids(ids) => {
                let wanted: HashSet<_> = ids.into_iter().collect();
                let mut all = self.list_dead(usize::MAX).await?;
                all.retain(|(_, d)| wanted.contains(&d.message.id));
                all
            }
        };
        let mut replayed = 0;
        if !chosen.is_empty() {
            self.ensure().await?;
        }
        for (seq, dead) in chosen {
            let message = dead.message;
            // A new dedup key: the message id may still be in the
            // duplicate window from its first push.
            let key = format!("{}~replay-{}-{seq}", message.id, self.stream_name);
            let headers = codec::encode(&message, codec::enqueued_ms(&message), &key);
            let publish = PublishMessage::build()
                .payload(message.payload.clone())
                .headers(headers);
            let stored = async {
                self.js
                    .send_publish(self.subject.clone(), publish)
                    .await
                    .map_err(|e| error::map("replay publish", &self.name, e))?
                    .await
                    .map_err(|e| error::map("replay ack", &self.name, e))
            };
            error::timed("replay publish", self.timeout(), stored).await?;
            let deleted = async {
                match self.dlq.delete_message(seq).await {
                    Ok(_) => Ok(()),
                    Err(e) if error::class_of(&e) == error::Class::NotFound => Ok(()),
                    Err(e) => Err(error::map("dead-letter delete", &self.name, e)),
                }
            };
            error::timed("dead-letter delete", self.timeout(), deleted).await?;
            replayed += 1;
        }
        Ok(replayed)
    }

    /// Deletes the dead letters with these message ids: one listing of the
    /// dead-letter stream to find their sequences, then one delete per
    /// sequence. A dead letter gone meanwhile (replayed, deleted by someone
    /// else) is not counted.
    pub(super) async fn delete_dead(&self, ids: &[MessageId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let wanted: HashSet<&MessageId> = ids.iter().collect();
        let mut deleted = 0;
        for (seq, dead) in self.list_dead(usize::MAX).await? {
            if !wanted.contains(&dead.message.id) {
                continue;
            }
            let delete = async {
                match self.dlq.delete_message(seq).await {
                    Ok(gone) => Ok(gone),
                    Err(e) if error::class_of(&e) == error::Class::NotFound => Ok(false),
                    Err(e) => Err(error::map("dead-letter delete", &self.name, e)),
                }
            };
            if error::timed("dead-letter delete", self.timeout(), delete).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    pub(super) async fn purge_dead(&self) -> Result<u64> {
        let purge = async {
            self.dlq
                .purge()
                .await
                .map(|r| r.purged)
                .or_else(|e| match error::class_of(&e) {
                    // No dead-letter stream: nothing to purge.
                    error::Class::NotFound => Ok(0),
                    _ => Err(error::map("dead-letter purge", &self.name, e)),
                })
        };
        error::timed("dead-letter purge", self.timeout(), purge).await
    }

    pub(super) async fn purge_queue(&self) -> Result<u64> {
        let purge = async {
            self.stream
                .purge()
                .filter(self.subject.clone())
                .await
                .map(|r| r.purged)
                .or_else(|e| match error::class_of(&e) {
                    // No stream: nothing to purge.
                    error::Class::NotFound => Ok(0),
                    _ => Err(error::map("purge", &self.name, e)),
                })
        };
        error::timed("purge", self.timeout(), purge).await
    }
}
