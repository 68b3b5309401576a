//! The dead-letter queue `<queue>.dlq`: moving a delivery there (publish a
//! copy with the reason, wait for the confirm, then acknowledge: never
//! lost, at worst duplicated), and listing, replaying, deleting from and
//! purging it.

use std::collections::HashSet;

use flextide_queue_core::{
    DeadLetter, MessageId, QueueError, Replay, Result,
    backend::{now_millis, system_time_from_millis},
};
use futures::future::join_all;
use lapin::{
    Channel,
    options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueuePurgeOptions},
    types::{AMQPValue, LongString, ShortString},
};

use super::{Inner, state::Lease};
use crate::{
    codec::{self, Decoded, H_DEAD_AT, H_REASON},
    error::timed,
    link::{CloseWithin, Link, check_confirmation},
};

impl Inner {
    /// Dead-letters what a pop refused (attempts used up, or undecodable),
    /// each by itself; one that cannot be moved goes back to the broker.
    pub(super) async fn dead_letter_refused(&self, link: &Link, refused: Vec<(Lease, String)>) {
        for (lease, reason) in refused {
            // Deliveries over the limit come from a handle opened with a
            // higher limit, or from broker redeliveries; an undecodable one
            // was never handed out, so this delivery is no attempt.
            let attempts = lease.attempt.saturating_sub(1);
            if let Err(e) = self
                .move_to_dlq(link, &lease.decoded, lease.tag, &reason, attempts)
                .await
            {
                tracing::warn!(queue = %self.name, error = %e, "rabbitmq: could not dead-letter a message; it will be redelivered");
                self.nack_back(link, lease.tag).await;
            }
        }
    }

    /// Publishes a copy of delivery `tag` to the dead-letter queue, waits for
    /// its confirm, then acknowledges the delivery.
    pub(super) async fn move_to_dlq(
        &self,
        link: &Link,
        decoded: &Decoded,
        tag: u64,
        reason: &str,
        attempts: u32,
    ) -> Result<()> {
        let extra = vec![
            (H_REASON, AMQPValue::LongString(LongString::from(reason))),
            (H_DEAD_AT, AMQPValue::LongLongInt(now_millis())),
        ];
        let props = codec::properties(&decoded.message, attempts, decoded.enqueued_ms, extra);
        link.publish_confirmed(&self.dlq, &decoded.message.payload, props)
            .await?;
        self.ack(link, tag).await
    }

    /// The next message of the dead-letter queue, read on `channel` with
    /// `basic.get` and left unacknowledged; `None` when the queue is empty.
    async fn next_dead_letter(&self, channel: &Channel) -> Result<Option<(u64, Decoded)>> {
        let got = timed(
            "basic.get",
            self.t(),
            channel.basic_get(
                ShortString::from(self.dlq.as_str()),
                BasicGetOptions { no_ack: false },
            ),
        )
        .await?;
        Ok(got.map(|got| {
            let d = got.delivery;
            (d.delivery_tag, codec::decode(d.data, &d.properties, 0))
        }))
    }

    /// Puts back, in place, every dead letter read on `channel` up to
    /// `last_tag` and not acknowledged, then closes the channel (which
    /// would give them back too; the nack keeps their order).
    async fn release_dead_letters(&self, channel: Channel, last_tag: Option<u64>) {
        if let Some(tag) = last_tag {
            let options = BasicNackOptions {
                multiple: true,
                requeue: true,
            };
            let _ = timed("basic.nack", self.t(), channel.basic_nack(tag, options)).await;
        }
        channel.close_within(self.t()).await;
    }

    pub(super) async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let link = self.link().await?;
        if !self.present(&link).await? {
            return Ok(Vec::new());
        }
        let channel = link.scratch_channel().await?;
        let mut out = Vec::new();
        let mut last_tag = None;
        let result = async {
            while out.len() < limit {
                let Some((tag, decoded)) = self.next_dead_letter(&channel).await? else {
                    break;
                };
                last_tag = Some(tag);
                out.push(dead_letter_of(decoded));
            }
            Ok::<_, QueueError>(())
        }
        .await;
        self.release_dead_letters(channel, last_tag).await;
        result?;
        Ok(out)
    }

    pub(super) async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        let link = self.link().await?;
        if !self.present(&link).await? {
            return Ok(0);
        }
        let link = self.ready_link().await?;
        let channel = link.scratch_channel().await?;
        let ids: HashSet<MessageId> = match &which {
            Replay::Ids(ids) => ids.iter().cloned().collect(),
            _ => HashSet::new(),
        };
        let limit = match which {
            Replay::Oldest(n) => n,
            Replay::Ids(_) | Replay::All => usize::MAX,
        };
        let mut pending = Vec::new();
        let mut last_tag = None;
        let read = async {
            while pending.len() < limit {
                let Some((tag, decoded)) = self.next_dead_letter(&channel).await? else {
                    break;
                };
                if matches!(which, Replay::Ids(_)) && !ids.contains(&decoded.message.id) {
                    // Left alone: given back, in place, below.
                    last_tag = Some(tag);
                    continue;
                }
                // Same id, payload and headers; attempts start again.
                let props = codec::properties(&decoded.message, 0, decoded.enqueued_ms, Vec::new());
                let confirm = link
                    .publish_start(&self.name, &decoded.message.payload, props)
                    .await?;
                pending.push((tag, confirm));
            }
            Ok::<_, QueueError>(())
        }
        .await;
        let t = self.t();
        let name = self.name.as_str();
        let confirmed = join_all(pending.into_iter().map(|(tag, confirm)| async move {
            let ok = match tokio::time::timeout(t, confirm).await {
                Ok(Ok(c)) => check_confirmation(name, c).is_ok(),
                _ => false,
            };
            (tag, ok)
        }))
        .await;
        let mut moved = 0;
        for (tag, ok) in confirmed {
            let single = BasicAckOptions { multiple: false };
            if ok
                && timed("basic.ack", t, channel.basic_ack(tag, single))
                    .await
                    .is_ok()
            {
                moved += 1;
            }
        }
        self.release_dead_letters(channel, last_tag).await;
        read?;
        Ok(moved)
    }

    /// Deletes the dead letters with these ids. A queue has no delete by id:
    /// every dead letter is read on one channel with `basic.get` and held
    /// unacknowledged, the chosen ones are acknowledged (which removes
    /// them) and the rest are given back in place, as for a replay by ids.
    /// While held they are invisible to other readers, never lost: a
    /// failure or a dropped connection gives them all back. A failed read
    /// deletes nothing.
    pub(super) async fn delete_dead_letters(&self, ids: &[MessageId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let link = self.link().await?;
        if !self.present(&link).await? {
            return Ok(0);
        }
        let channel = link.scratch_channel().await?;
        let wanted: HashSet<&MessageId> = ids.iter().collect();
        let mut chosen = Vec::new();
        let mut last_tag = None;
        let read = async {
            // To the end, not to the last id found: a dead letter may be
            // there twice (a move to the dead letters is at worst duplicated).
            while let Some((tag, decoded)) = self.next_dead_letter(&channel).await? {
                if wanted.contains(&decoded.message.id) {
                    chosen.push(tag);
                } else {
                    last_tag = Some(tag);
                }
            }
            Ok::<_, QueueError>(())
        }
        .await;
        let mut deleted = 0;
        if read.is_ok() {
            let single = BasicAckOptions { multiple: false };
            for tag in chosen {
                if timed("basic.ack", self.t(), channel.basic_ack(tag, single))
                    .await
                    .is_ok()
                {
                    deleted += 1;
                }
            }
        }
        self.release_dead_letters(channel, last_tag).await;
        read?;
        Ok(deleted)
    }

    pub(super) async fn purge_dead_letters(&self) -> Result<u64> {
        let link = self.link().await?;
        if !self.present(&link).await? {
            return Ok(0);
        }
        let channel = link.scratch_channel().await?;
        let purged = timed(
            "queue.purge",
            self.t(),
            channel.queue_purge(
                ShortString::from(self.dlq.as_str()),
                QueuePurgeOptions::default(),
            ),
        )
        .await;
        channel.close_within(self.t()).await;
        Ok(u64::from(purged?))
    }
}

fn dead_letter_of(decoded: Decoded) -> DeadLetter {
    let dead_ms = decoded.dead_at_ms.unwrap_or(decoded.enqueued_ms);
    let attempts = if decoded.dead_at_ms.is_some() {
        decoded.attempts_done
    } else {
        decoded.attempts_done + 1
    };
    DeadLetter::new(
        decoded.message,
        decoded.reason.unwrap_or_else(|| "unknown".to_owned()),
        attempts,
        system_time_from_millis(dead_ms),
    )
}
