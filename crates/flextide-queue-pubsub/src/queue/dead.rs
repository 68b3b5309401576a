//! Dead letters: a topic and subscription of their own (`<queue>.dlq`).
//!
//! A move publishes the message to the dead-letter topic (its data and
//! attributes as they were, our id, the reason, the attempts and the time)
//! and then acknowledges it on the queue. If the process dies between the
//! two, the message is delivered again after its lease and may be moved a
//! second time: the copies carry the same id, and listing shows one of them
//! (acknowledging the others), so a repeat is harmless. Pub/Sub's own
//! dead-letter policy forwards a message delivered `max_delivery_attempts`
//! times; those copies carry Pub/Sub's delivery count instead of our reason.
//!
//! Listing pulls the whole dead-letter subscription and gives every message
//! back at once (ack deadline 0); replay republishes to the queue's topic
//! and acknowledges; deleting chosen dead letters acknowledges them and
//! gives the rest back; purge acknowledges what it pulled and seeks the
//! subscription to now. Two listings at the same moment can each miss what
//! the other holds for that instant.

use std::{
    collections::{HashMap, HashSet},
    time::SystemTime,
};

use flextide_queue_core::{
    DeadLetter, MessageId, QueueError, Receipt, Replay, Result, backend::max_attempts_reason,
};
use gcloud_gax::grpc::Code;
use gcloud_googleapis::pubsub::v1::PubsubMessage;

use super::{PubSubQueue, held::Known};
use crate::{BACKEND, codec, error, receipt};

/// Most dead letters one listing reads.
const LIST_CAP: usize = 100_000;

/// A dead letter as pulled.
struct Pulled {
    ack_id: String,
    original: PubsubMessage,
    letter: DeadLetter,
}

/// The dead-letter subscription's messages, oldest first: one per id, and
/// the ack ids of the extra copies.
struct Listing {
    unique: Vec<Pulled>,
    copies: Vec<String>,
}

impl PubSubQueue {
    /// Publishes a message to the dead-letter topic, then acknowledges its
    /// delivery.
    pub(super) async fn bury(
        &self,
        ack_id: &str,
        original: &PubsubMessage,
        id: &MessageId,
        reason: &str,
        attempts: u32,
    ) -> Result<()> {
        let dead = codec::dead_letter(original, id, reason, attempts);
        self.conn
            .publish(&self.names.dl_topic, vec![dead])
            .await
            .map_err(|s| error::map("publish to the dead-letter topic", s))?;
        self.conn
            .ack(&self.names.subscription, &[ack_id.to_owned()])
            .await
            .map_err(|s| error::map("acknowledge", s))
    }

    /// `dead_letter`: needs the handle whose pop delivered the message
    /// (it holds the body).
    pub(super) async fn bury_receipt(&self, r: &Receipt, reason: &str) -> Result<()> {
        let r = receipt::decode(r)?;
        match self.held.get(&r.ack_id) {
            Some(Known::Live { original, id }) => {
                self.check_live(&r.ack_id).await?;
                self.bury(&r.ack_id, &original, &id, reason, r.attempt)
                    .await?;
                self.held.settled(&r.ack_id);
                Ok(())
            }
            Some(Known::Settled) => Err(QueueError::StaleReceipt { backend: BACKEND }),
            None => {
                self.check_live(&r.ack_id).await?;
                Err(QueueError::invalid_receipt(
                    BACKEND,
                    "dead_letter on Pub/Sub needs the handle whose pop delivered the message (it holds the message's body); nack it there, or let its attempts run out",
                ))
            }
        }
    }

    /// Pulls the whole dead-letter subscription (nothing when it does not
    /// exist: creates nothing).
    async fn pull_dead(&self) -> Result<Listing> {
        let sub = &self.names.dl_subscription;
        let mut all = Vec::new();
        loop {
            let got = match self.conn.pull(sub, crate::PUBSUB_MAX_BATCH, None).await {
                Ok(got) => got,
                Err(s) if s.code() == Code::NotFound => break,
                Err(s) => {
                    self.give_back_dead(all.iter().map(|p: &Pulled| p.ack_id.clone()).collect())
                        .await;
                    return Err(error::map("pull dead letters", s));
                }
            };
            if got.is_empty() {
                break;
            }
            for r in got {
                if let Some(m) = r.message {
                    let letter = self.letter(&m);
                    all.push(Pulled {
                        ack_id: r.ack_id,
                        original: m,
                        letter,
                    });
                }
            }
            if all.len() >= LIST_CAP {
                break;
            }
        }
        all.sort_by_key(|p| p.letter.dead_lettered_at);
        let mut seen = HashSet::new();
        let mut unique = Vec::with_capacity(all.len());
        let mut copies = Vec::new();
        for p in all {
            if seen.insert(p.letter.message.id.clone()) {
                unique.push(p);
            } else {
                copies.push(p.ack_id);
            }
        }
        Ok(Listing { unique, copies })
    }

    /// Reads a dead letter: ours (reason and attempts in attributes) or
    /// forwarded by Pub/Sub's dead-letter policy (its delivery count).
    fn letter(&self, m: &PubsubMessage) -> DeadLetter {
        let a = &m.attributes;
        let decoded = codec::decode(m);
        let forwarded = a
            .get(codec::A_PUBSUB_COUNT)
            .and_then(|c| c.parse::<u32>().ok());
        let attempts = a
            .get(codec::A_ATTEMPTS)
            .and_then(|c| c.parse().ok())
            .or(forwarded)
            .unwrap_or(0);
        let reason = match a.get(codec::A_REASON) {
            Some(r) => r.clone(),
            None => max_attempts_reason(forwarded.unwrap_or(attempts)),
        };
        let at = a
            .get(codec::A_DEAD_AT)
            .and_then(|v| v.parse::<i64>().ok())
            .map(flextide_queue_core::backend::system_time_from_millis)
            .or_else(|| m.publish_time.as_ref().map(codec::timestamp))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        DeadLetter::new(decoded.message, reason, attempts, at)
    }

    /// Gives pulled dead letters back at once; a failure only delays them
    /// by the subscription's ack deadline.
    async fn give_back_dead(&self, ack_ids: Vec<String>) {
        for chunk in ack_ids.chunks(crate::PUBSUB_MAX_BATCH) {
            if let Err(s) = self
                .conn
                .modack(&self.names.dl_subscription, chunk, 0)
                .await
            {
                tracing::debug!(queue = %self.name, error = %error::map("modify ack deadline", s), "dead letters stay hidden until their ack deadline");
            }
        }
    }

    async fn ack_dead(&self, ack_ids: Vec<String>) -> Result<()> {
        for chunk in ack_ids.chunks(crate::PUBSUB_MAX_BATCH) {
            self.conn
                .ack(&self.names.dl_subscription, chunk)
                .await
                .map_err(|s| error::map("acknowledge dead letters", s))?;
        }
        Ok(())
    }

    pub(super) async fn list_dead(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Listing { unique, copies } = self.pull_dead().await?;
        self.ack_dead(copies).await?;
        self.give_back_dead(unique.iter().map(|p| p.ack_id.clone()).collect())
            .await;
        Ok(unique.into_iter().take(limit).map(|p| p.letter).collect())
    }

    pub(super) async fn count_dead(&self) -> Result<u64> {
        let Listing { unique, copies } = self.pull_dead().await?;
        self.ack_dead(copies).await?;
        let n = unique.len() as u64;
        self.give_back_dead(unique.into_iter().map(|p| p.ack_id).collect())
            .await;
        Ok(n)
    }

    pub(super) async fn replay(&self, which: Replay) -> Result<u64> {
        let Listing { unique, copies } = self.pull_dead().await?;
        let chosen: Vec<bool> = match &which {
            Replay::All => vec![true; unique.len()],
            Replay::Oldest(n) => (0..unique.len()).map(|i| i < *n).collect(),
            Replay::Ids(ids) => {
                let ids: HashSet<&MessageId> = ids.iter().collect();
                unique
                    .iter()
                    .map(|p| ids.contains(&p.letter.message.id))
                    .collect()
            }
        };
        let mut take: Vec<Pulled> = Vec::new();
        let mut keep: Vec<String> = Vec::new();
        for (p, c) in unique.into_iter().zip(chosen) {
            if c {
                take.push(p);
            } else {
                keep.push(p.ack_id);
            }
        }
        self.give_back_dead(keep).await;
        self.ack_dead(copies).await?;
        if take.is_empty() {
            return Ok(0);
        }
        self.ensure().await?;
        let mut republish = Vec::with_capacity(take.len());
        let mut by_id: HashMap<MessageId, String> = HashMap::new();
        for p in &take {
            republish.push(codec::replayed(&p.original, &p.letter.message.id));
            by_id.insert(p.letter.message.id.clone(), p.ack_id.clone());
        }
        for chunk in republish.chunks(self.config.max_batch) {
            if let Err(s) = self.conn.publish(&self.names.topic, chunk.to_vec()).await {
                self.give_back_dead(take.iter().map(|p| p.ack_id.clone()).collect())
                    .await;
                return Err(error::map("publish replayed messages", s));
            }
        }
        // Acknowledged only once republished: a failure here leaves a copy
        // in both places, never in neither.
        self.ack_dead(by_id.into_values().collect()).await?;
        Ok(take.len() as u64)
    }

    /// Deletes the dead letters with these ids: the whole subscription is
    /// pulled (up to [`LIST_CAP`]), the chosen ones are acknowledged with
    /// every extra copy, and the rest are given back at once.
    pub(super) async fn delete_dead(&self, ids: &[MessageId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let wanted: HashSet<&MessageId> = ids.iter().collect();
        let Listing { unique, mut copies } = self.pull_dead().await?;
        let (chosen, rest): (Vec<Pulled>, Vec<Pulled>) = unique
            .into_iter()
            .partition(|p| wanted.contains(&p.letter.message.id));
        self.give_back_dead(rest.into_iter().map(|p| p.ack_id).collect())
            .await;
        let n = chosen.len() as u64;
        copies.extend(chosen.into_iter().map(|p| p.ack_id));
        self.ack_dead(copies).await?;
        Ok(n)
    }

    pub(super) async fn purge_dead(&self) -> Result<u64> {
        let Listing { unique, copies } = self.pull_dead().await?;
        let n = unique.len() as u64;
        let mut all: Vec<String> = unique.into_iter().map(|p| p.ack_id).collect();
        all.extend(copies);
        self.ack_dead(all).await?;
        self.conn
            .seek_now(&self.names.dl_subscription)
            .await
            .map_err(|s| error::map("seek dead letters", s))?;
        Ok(n)
    }
}
