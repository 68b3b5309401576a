//! `pop_batch`: unary pulls with the wait as their deadline until a
//! delivery arrives or the wait is over, then decode the batch, hand out
//! what may be delivered and move the rest to the dead letters.

use std::{sync::Arc, time::Duration};

use flextide_queue_core::{
    Delivery, MessageId, Result,
    backend::{Decoded, max_attempts_reason},
};
use gcloud_gax::grpc::Code;
use gcloud_googleapis::pubsub::v1::{PubsubMessage, ReceivedMessage};
use tokio::time::Instant;

use super::PubSubQueue;
use crate::{codec, error, receipt};

/// The shortest deadline a pull is given (a pop with no wait still asks
/// the server once).
const MIN_PULL: Duration = Duration::from_millis(250);

/// The emulator answers an empty pull a second before its deadline, and at
/// once when the deadline is shorter: the last second of a wait is polled
/// at this pace.
const POLL: Duration = Duration::from_millis(100);

/// A pulled message that is not handed out.
pub(super) struct Withheld {
    pub(super) ack_id: String,
    pub(super) original: Arc<PubsubMessage>,
    pub(super) id: MessageId,
    pub(super) attempts: u32,
}

impl PubSubQueue {
    pub(super) async fn pop_many(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let max = max.min(self.config.max_batch);
        if max == 0 {
            return Ok(Vec::new());
        }
        self.ensure().await?;
        let deadline = Instant::now() + wait;
        let mut recreated = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let started = Instant::now();
            let pulled = match self
                .conn
                .pull(&self.names.subscription, max, Some(left.max(MIN_PULL)))
                .await
            {
                Ok(pulled) => pulled,
                // Another handle dropped the queue: create it again, once
                // per pop.
                Err(s) if s.code() == Code::NotFound && !recreated && self.forget_created() => {
                    recreated = true;
                    tracing::info!(queue = %self.name, "the queue's subscription was gone; creating it again");
                    self.ensure().await?;
                    continue;
                }
                Err(s) => return Err(error::map("pull", s)),
            };
            let empty = pulled.is_empty();
            if !empty {
                let deliveries = self.sort(pulled, started).await;
                if !deliveries.is_empty() {
                    return Ok(deliveries);
                }
                // Everything pulled was poison or undecodable: wait on.
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            if empty && left < POLL * 11 {
                tokio::time::sleep(left.min(POLL)).await;
            }
        }
    }

    /// Decodes a pulled batch, hands out what may be delivered and moves the
    /// rest (undecodable, or past `max_attempts`) to the dead letters. A
    /// move that fails is logged: the message comes back after its lease
    /// and is moved then.
    async fn sort(&self, pulled: Vec<ReceivedMessage>, started: Instant) -> Vec<Delivery> {
        let max_attempts = self.options.max_attempts;
        let lease = self.lease();
        let mut exhausted = Vec::new();
        let mut entries = Vec::with_capacity(pulled.len());
        for r in pulled {
            let Some(m) = r.message else {
                continue;
            };
            // Filled only where the subscription has a dead-letter policy,
            // which the library always sets (see `learn` otherwise).
            let attempt = u32::try_from(r.delivery_attempt).unwrap_or(0).max(1);
            let decoded = codec::decode(&m);
            let original = Arc::new(m);
            let withheld = |attempts| Withheld {
                ack_id: r.ack_id.clone(),
                original: original.clone(),
                id: decoded.message.id.clone(),
                attempts,
            };
            if let Some(what) = &decoded.undecodable {
                entries.push(Err((withheld(attempt), what.clone())));
            } else if let Some(limit) = max_attempts.filter(|&n| attempt > n) {
                exhausted.push((withheld(limit), max_attempts_reason(limit)));
            } else {
                self.held.insert(
                    &r.ack_id,
                    original.clone(),
                    decoded.message.id.clone(),
                    lease,
                );
                entries.push(Ok(Delivery::new(
                    decoded.message,
                    receipt::encode(attempt, &r.ack_id),
                    attempt,
                    started + lease,
                )));
            }
        }
        let sorted: Decoded<Delivery, Withheld> = Decoded::sort(entries);
        for (w, reason) in sorted.undecodable.into_iter().chain(exhausted) {
            if let Err(e) = self
                .bury(&w.ack_id, &w.original, &w.id, &reason, w.attempts)
                .await
            {
                tracing::warn!(queue = %self.name, error = %e, "could not move a message to the dead letters; it comes back after its lease");
            }
        }
        sorted.ok
    }
}
