//! `pop_batch`: one pull request for up to `max` messages, answered as soon
//! as at least one is there.
//!
//! The request is `no_wait` with an expiry: the server waits up to `wait`
//! for the first message, then sends what is available and ends the
//! request at once, so no request stays open on the server after the pop
//! has returned (an open request would later take messages for an inbox
//! nobody reads, and their leases would run out unseen). Each pop makes a
//! fresh request on a fresh inbox, so nothing goes stale across a
//! reconnect (unlike a long-lived pull stream, which async-nats does not
//! restart after the server comes back).

use std::time::Duration;

use async_nats::jetstream::Message as JsMessage;
use flextide_queue_core::{
    Delivery, QueueError, Receipt, Result,
    backend::{Decoded, max_attempts_reason},
};
use futures::StreamExt;
use tokio::time::Instant;

use super::NatsQueue;
use crate::{BACKEND, codec, receipt};

/// The longest one pull request waits. A request sent just before the
/// connection drops is lost with it, and nothing tells the client; a long
/// wait is therefore made of short requests, each on the connection of the
/// moment.
const MAX_PULL_WAIT: Duration = Duration::from_secs(1);

/// How long past its expiry a request's end may be late before the pull
/// gives up on it (the server's answer was lost).
const PULL_GRACE: Duration = Duration::from_secs(2);

/// A pulled message that is not handed out: why, and the deliveries to record.
struct Withheld {
    message: JsMessage,
    attempts: u32,
}

impl NatsQueue {
    /// One pull request; returns the messages and when the request was sent
    /// (their leases run from then).
    async fn pull(&self, max: usize, wait: Duration) -> Result<(Vec<JsMessage>, Instant)> {
        let started = Instant::now();
        let mut fetch = self.consumer.fetch().max_messages(max);
        if wait >= Duration::from_millis(1) {
            fetch = fetch.expires(wait);
        }
        let collect = async {
            let mut batch = fetch
                .messages()
                .await
                .map_err(|e| QueueError::connection(BACKEND, e))?;
            let mut got = Vec::new();
            while let Some(item) = batch.next().await {
                match item {
                    Ok(m) => got.push(m),
                    // After some messages, keep them: their leases run.
                    Err(e) if got.is_empty() => return Err(QueueError::connection(BACKEND, e)),
                    Err(e) => {
                        tracing::warn!(queue = %self.name, error = %e, "pull ended early");
                        break;
                    }
                }
            }
            Ok(got)
        };
        // The server answers by `wait`; well past that, the answer was lost
        // (a reconnect): report nothing rather than hang.
        match tokio::time::timeout(wait + PULL_GRACE, collect).await {
            Ok(got) => Ok((got?, started)),
            Err(_) => Ok((Vec::new(), started)),
        }
    }

    pub(super) async fn pop_many(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let max = max.min(self.settings.config.max_batch);
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (pulled, started) = self.pull(max, left.min(MAX_PULL_WAIT)).await?;
            if pulled.is_empty() {
                if Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                continue;
            }
            let deliveries = self.sort(pulled, started).await?;
            // Everything pulled was poison or undecodable: wait on for more.
            if !deliveries.is_empty() || Instant::now() >= deadline {
                return Ok(deliveries);
            }
        }
    }

    /// Decodes a pulled batch, hands out what may be delivered and moves the
    /// rest (undecodable, or past `max_attempts`) to the dead letters.
    async fn sort(&self, pulled: Vec<JsMessage>, started: Instant) -> Result<Vec<Delivery>> {
        let lease_deadline = started + self.lease;
        let max_attempts = self.options.max_attempts;
        let mut exhausted = Vec::new();
        let entries = pulled.into_iter().filter_map(|m| {
            let Some(reply) = m.reply.as_ref().map(|r| r.to_string()) else {
                return Some(Err((None, "the message carries no ack subject".to_owned())));
            };
            let info = match receipt::parse_subject(&reply, &self.stream_name) {
                Ok(info) => (info.delivered, info.stream_seq, info.published_ns),
                Err(e) => return Some(Err((None, e.to_string()))),
            };
            let (delivered, seq, published_ns) = info;
            let stored = codec::system_time_from_nanos(published_ns);
            let decoded = codec::decode(m.headers.as_ref(), m.payload.clone(), seq, stored);
            if let Some(what) = decoded.undecodable {
                return Some(Err((
                    Some(Withheld {
                        message: m,
                        attempts: delivered,
                    }),
                    what,
                )));
            }
            if let Some(limit) = max_attempts.filter(|&n| delivered > n) {
                exhausted.push((m, decoded.message, limit));
                return None;
            }
            Some(Ok(Delivery::new(
                decoded.message,
                Receipt::new(reply),
                delivered,
                lease_deadline,
            )))
        });
        let sorted: Decoded<Delivery, Option<Withheld>> = Decoded::sort(entries.collect::<Vec<_>>());
        for (withheld, reason) in sorted.undecodable {
            match withheld {
                Some(w) => {
                    let stored = w
                        .message
                        .reply
                        .as_ref()
                        .and_then(|r| receipt::parse_subject(r, &self.stream_name).ok())
                        .map_or(0, |i| i.stream_seq);
                    let decoded = codec::decode(
                        w.message.headers.as_ref(),
                        w.message.payload.clone(),
                        stored,
                        std::time::SystemTime::now(),
                    );
                    self.bury(&w.message, &decoded.message, &reason, w.attempts)
                        .await?;
                }
                // Not a JetStream delivery at all: nothing to settle.
                None => tracing::warn!(queue = %self.name, %reason, "ignored a pulled message"),
            }
        }
        for (m, message, limit) in exhausted {
            self.bury(&m, &message, &max_attempts_reason(limit), limit)
                .await?;
        }
        Ok(sorted.ok)
    }

    /// Moves a pulled message to the dead letters without handing it out.
    async fn bury(
        &self,
        m: &JsMessage,
        message: &flextide_queue_core::Message,
        reason: &str,
        attempts: u32,
    ) -> Result<()> {
        let reply = m.reply.as_ref().map(|r| r.to_string()).unwrap_or_default();
        let info = receipt::parse_subject(&reply, &self.stream_name)?;
        self.move_to_dead(&info, message, reason, attempts).await
    }
}
