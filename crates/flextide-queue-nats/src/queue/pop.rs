//! `pop_batch`: pull requests (see `pull.rs`) until a delivery arrives or
//! `wait` is over, then decode the batch, hand out what may be delivered and
//! move the rest to the dead letters.

use std::time::Duration;

use async_nats::Message as NatsMessage;
use flextide_queue_core::{
    Delivery, Message, Receipt, Result,
    backend::{Decoded, max_attempts_reason},
};
use tokio::time::Instant;

use super::{
    NatsQueue,
    pull::{MAX_PULL_WAIT, Pulled},
};
use crate::{codec, receipt};

/// A pulled message that is not handed out: the message as far as it could
/// be read, and its deliveries so far.
struct Withheld {
    reply: String,
    message: Message,
    attempts: u32,
}

impl NatsQueue {
    pub(super) async fn pop_many(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let max = max.min(self.settings.config.max_batch);
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        self.ensure().await?;
        self.warn_lease_once();
        let mut recreated = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (pulled, unanswered) = match self.puller.pull(max, left.min(MAX_PULL_WAIT)).await {
                Ok(pulled) => pulled,
                // A refused pull (nats-server 2.14 answers one for a deleted
                // consumer with 503 no responders): when the consumer is
                // gone (another handle dropped the queue), the queue is
                // created again, once per pop; otherwise the error stands.
                Err(e) if !recreated => {
                    recreated = true;
                    match self.recreate_if_gone().await {
                        Ok(true) => {
                            tracing::info!(queue = %self.name, "the queue's consumer was gone; created it again");
                            continue;
                        }
                        _ => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            // No answer at all (nats-server 2.9 drops a pull for a deleted
            // consumer silently): the same check, once per pop. A check
            // that fails (the answer was lost in a reconnect, which is
            // still under way) changes nothing: the pop goes on.
            if unanswered && !recreated {
                recreated = true;
                match self.recreate_if_gone().await {
                    Ok(true) => {
                        tracing::info!(queue = %self.name, "the queue's consumer was gone; created it again");
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(queue = %self.name, error = %e, "an unanswered pull; the consumer check failed");
                    }
                }
            }
            if !pulled.is_empty() {
                let deliveries = self.sort(pulled).await?;
                if !deliveries.is_empty() {
                    return Ok(deliveries);
                }
                // Everything pulled was poison or undecodable: wait on.
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    /// Decodes a pulled batch, hands out what may be delivered and moves the
    /// rest (undecodable, or past `max_attempts`) to the dead letters.
    async fn sort(&self, pulled: Pulled) -> Result<Vec<Delivery>> {
        let max_attempts = self.options.max_attempts;
        let mut exhausted = Vec::new();
        let mut entries = Vec::with_capacity(pulled.len());
        for (m, started) in pulled {
            let NatsMessage {
                reply,
                headers,
                payload,
                ..
            } = m;
            let Some(reply) = reply.map(|r| r.to_string()) else {
                tracing::warn!(queue = %self.name, "ignored a pulled message without an ack subject");
                continue;
            };
            let info = match receipt::parse_subject(&reply, &self.stream_name) {
                Ok(info) => (
                    self.attempts
                        .observe(info.stream_seq, info.consumer_seq, info.delivered),
                    info.stream_seq,
                    info.published_ns,
                ),
                Err(e) => {
                    tracing::warn!(queue = %self.name, error = %e, "ignored a pulled message");
                    continue;
                }
            };
            let (delivered, seq, published_ns) = info;
            let stored = codec::system_time_from_nanos(published_ns);
            let decoded = codec::decode(headers.as_ref(), payload, seq, stored);
            if let Some(what) = decoded.undecodable {
                entries.push(Err((
                    Withheld {
                        reply,
                        message: decoded.message,
                        attempts: delivered,
                    },
                    what,
                )));
            } else if let Some(limit) = max_attempts.filter(|&n| delivered > n) {
                exhausted.push(Withheld {
                    reply,
                    message: decoded.message,
                    attempts: limit,
                });
            } else {
                entries.push(Ok(Delivery::new(
                    decoded.message,
                    Receipt::new(reply),
                    delivered,
                    started + self.lease(),
                )));
            }
        }
        let sorted: Decoded<Delivery, Withheld> = Decoded::sort(entries);
        for (w, reason) in sorted.undecodable {
            self.bury(w, &reason).await?;
        }
        if let Some(limit) = max_attempts {
            for w in exhausted {
                self.bury(w, &max_attempts_reason(limit)).await?;
            }
        }
        Ok(sorted.ok)
    }

    /// Moves a pulled message to the dead letters without handing it out.
    async fn bury(&self, w: Withheld, reason: &str) -> Result<()> {
        let info = receipt::parse_subject(&w.reply, &self.stream_name)?;
        self.move_to_dead(&info, &w.message, reason, w.attempts)
            .await
    }
}
