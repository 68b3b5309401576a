//! `SqsQueue`: one SQS queue (and its dead-letter queue) as a `QueueProvider`.
//!
//! The jobs live in one file each: [`open`] (attributes, dead-letter queue),
//! [`send`] (encoding, batched sends), [`receive`] (the pop path),
//! [`settle`] (visibility and deletes) and [`dead_letters`].

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_sdk_sqs::{Client, types::QueueAttributeName};
use flextide_queue_core::{
    BatchFailure, Capabilities, DeadLetter, Delivery, Message, MessageId, Pushed, QueueError,
    QueueProvider, QueueStats, Receipt, Replay, Result, backend::max_attempts_reason,
};
use tokio::time::Instant;

mod dead_letters;
mod drop;
mod open;
mod receive;
mod send;
mod settle;

use crate::{BACKEND, client::Names, codec, error::Fault, inflight};
use receive::Stash;
use send::Outgoing;

/// SQS's longest long poll.
const MAX_WAIT_SECONDS: u64 = 20;
/// Pause between short polls when less than a second of a wait is left.
const SHORT_POLL_PAUSE: Duration = Duration::from_millis(100);
/// SQS's longest per-message delay.
const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout.
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// SQS's default `MaximumMessageSize`, used when the queue does not say.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 262_144;
/// How long dead letters stay hidden while they are listed or replayed.
const SCAN_VISIBILITY_SECONDS: i32 = 30;
/// Long poll used when scanning the dead-letter queue, so that an empty
/// answer means empty (a short poll samples only some SQS servers).
const SCAN_WAIT_SECONDS: i32 = 1;
/// Most dead letters one listing or replay looks at.
const MAX_SCAN: usize = 10_000;

/// The dead-letter queue of an [`SqsQueue`].
#[derive(Debug, Clone)]
struct DeadLetterQueue {
    url: String,
    /// `maxReceiveCount` of the main queue's redrive policy, when it has one.
    max_receive_count: Option<u32>,
}

/// One SQS queue, standard or FIFO, as a Flextide [`QueueProvider`].
///
/// Open it with [`SqsClient::open`](crate::SqsClient::open),
/// [`open_url`](crate::SqsClient::open_url) or
/// [`ensure_queue`](crate::SqsClient::ensure_queue). Its capabilities depend
/// on the queue: FIFO queues support ordering keys and dedup ids but no
/// per-message delay; dead letters need a dead-letter queue (the redrive
/// policy's target, or else `<name>-dlq`).
#[derive(Clone)]
pub struct SqsQueue {
    sdk: Client,
    names: Names,
    url: String,
    dlq: Option<DeadLetterQueue>,
    lease: Duration,
    max_attempts: Option<u32>,
    max_message_size: usize,
    max_payload: usize,
    /// Deliveries received for pops that were dropped, for the next pops.
    stash: Arc<Stash>,
}

impl fmt::Debug for SqsQueue {
    // No URL (it names the account) and no client (it holds credentials).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsQueue")
            .field("name", &self.names.stem)
            .field("fifo", &self.names.fifo)
            .field("dead_letter_queue", &self.dlq.is_some())
            .field("lease", &self.lease)
            .field("max_attempts", &self.max_attempts)
            .field("max_payload", &self.max_payload)
            .finish()
    }
}

/// Whole seconds covering `d` (SQS counts whole seconds; rounding up never
/// shortens a delay or a lease).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl SqsQueue {
    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queue's SQS name (with `.fifo` on FIFO queues).
    pub fn sqs_name(&self) -> String {
        self.names.sqs_name()
    }

    /// Whether this is a FIFO queue.
    pub fn is_fifo(&self) -> bool {
        self.names.fifo
    }

    /// The dead-letter queue's URL, if the queue has one.
    pub fn dead_letter_queue_url(&self) -> Option<&str> {
        self.dlq.as_ref().map(|d| d.url.as_str())
    }

    fn err(&self, fault: Fault, op: &'static str) -> QueueError {
        fault.into_error(&self.names.sqs_name(), op)
    }

    /// The dead-letter queue, or an error saying the queue has none and
    /// how to give it one.
    fn dlq(&self, op: &'static str) -> Result<&DeadLetterQueue> {
        self.dlq.as_ref().ok_or_else(|| {
            QueueError::unsupported_because(
                BACKEND,
                op,
                format!(
                    "queue {:?} has no dead-letter queue: give it a RedrivePolicy whose deadLetterTargetArn names one, or create {:?} (SqsClient::ensure_queue creates both)",
                    self.names.sqs_name(),
                    self.names.dlq_name()
                ),
            )
        })
    }

    fn batch_limit(&self) -> usize {
        self.max_message_size.max(codec::CLASSIC_BATCH_BYTES)
    }
}

fn partial(failures: Vec<BatchFailure>) -> QueueError {
    QueueError::PartialBatch {
        backend: BACKEND,
        failures,
    }
}

#[async_trait]
impl QueueProvider for SqsQueue {
    fn queue_name(&self) -> &str {
        &self.names.stem
    }

    fn capabilities(&self) -> Capabilities {
        let fifo = self.names.fifo;
        Capabilities {
            // Unkeyed messages of a FIFO queue each get a group of their own,
            // and SQS orders nothing across groups.
            fifo: false,
            ordering_key: fifo,
            priority: false,
            delay: !fifo,
            max_delay: (!fifo).then_some(MAX_DELAY),
            max_payload_bytes: Some(self.max_payload),
            max_batch: Some(codec::MAX_BATCH_ENTRIES),
            extend_lease: true,
            fenced_receipts: false,
            dead_letters: self.dlq.is_some(),
            dedup: fifo,
            // SQS remembers a deduplication id for 5 minutes.
            dedup_window: fifo.then_some(Duration::from_secs(300)),
            delete_dead_letters: self.dlq.is_some(),
            exact_stats: false,
            peek: false,
            purge: true,
            // ApproximateReceiveCount, which the redrive policy counts, only grows.
            release: false,
            drop_queue: true,
            blind_stats: false,
        }
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        let out = self.prepare(&message)?;
        self.send_one(&self.url, &out)
            .await
            .map_err(|f| self.err(f, "send_message"))?;
        Ok(message.id)
    }

    /// FIFO queues drop a message whose `MessageDeduplicationId` they took
    /// within 5 minutes, but answer that send as they answer a new one
    /// (moto with a fresh `MessageId`; AWS is reported to repeat the first
    /// send's SQS `MessageId`, which names no Flextide id either), and
    /// nothing looks a message up by its deduplication id. So a duplicate
    /// cannot be told from a new message here: this reports `Enqueued`
    /// with the message's own id either way (see the README).
    async fn push_unique(&self, message: Message) -> Result<Pushed> {
        self.push(message).await.map(Pushed::Enqueued)
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        let mut failures = Vec::new();
        let mut ready = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            match self.prepare(message) {
                Ok(out) => ready.push((index, out)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        let outs: Vec<&Outgoing> = ready.iter().map(|(_, o)| o).collect();
        let results = self.send_all(&self.url, &outs).await;
        for ((index, _), result) in ready.iter().zip(results) {
            if let Some(fault) = result {
                failures.push(BatchFailure {
                    index: *index,
                    error: self.err(fault, "send_message_batch"),
                });
            }
        }
        if failures.is_empty() {
            Ok(messages.into_iter().map(|m| m.id).collect())
        } else {
            failures.sort_by_key(|f| f.index);
            Err(partial(failures))
        }
    }

    async fn pop(&self, wait: Duration) -> Result<Option<Delivery>> {
        Ok(self.pop_batch(1, wait).await?.pop())
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(codec::MAX_BATCH_ENTRIES);
        let deadline = Instant::now() + wait;
        let lease_seconds = ceil_secs(self.lease).min(MAX_VISIBILITY_SECONDS);
        loop {
            // Long-poll whole seconds (at most 20 per call); the last
            // fraction of a second is covered by short polls.
            let remaining = deadline.saturating_duration_since(Instant::now());
            let wait_seconds = remaining.as_secs().min(MAX_WAIT_SECONDS);
            let deliveries = self.look(max, wait_seconds, lease_seconds).await?;
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            if wait_seconds == 0 {
                tokio::time::sleep(SHORT_POLL_PAUSE.min(deadline - now)).await;
            }
        }
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        self.sdk
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt.as_str())
            .send()
            .await
            .map_err(|e| self.err(Fault::from_sdk(&e), "delete_message"))?;
        inflight::remove(receipt.as_str());
        Ok(())
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        let handles: Vec<&str> = receipts.iter().map(Receipt::as_str).collect();
        let results = self.delete_receipts(&self.url, &handles).await;
        let mut failures = Vec::new();
        for (index, result) in results.into_iter().enumerate() {
            match result {
                None => inflight::remove(handles[index]),
                Some(fault) => failures.push(BatchFailure {
                    index,
                    error: self.err(fault, "delete_message_batch"),
                }),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(partial(failures))
        }
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let seconds = ceil_secs(delay);
        if seconds > MAX_VISIBILITY_SECONDS {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("nack delay {delay:?} exceeds SQS's 12 hours"),
            ));
        }
        // The last allowed attempt: dead-letter now rather than on the next receive.
        if let (Some(max), Some(_)) = (self.max_attempts, &self.dlq)
            && let Some(d) = inflight::get(&self.url, receipt.as_str())
            && d.attempt >= max
        {
            return self
                .move_to_dlq(receipt.as_str(), &d, &max_attempts_reason(max), d.attempt)
                .await;
        }
        self.change_visibility(receipt.as_str(), seconds, "nack")
            .await?;
        inflight::remove(receipt.as_str());
        Ok(())
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        let seconds = ceil_secs(by);
        if seconds > MAX_VISIBILITY_SECONDS {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("lease {by:?} exceeds SQS's 12 hours"),
            ));
        }
        let sent_at = Instant::now();
        self.change_visibility(receipt.as_str(), seconds, "extend")
            .await?;
        inflight::extend(receipt.as_str(), sent_at + Duration::from_secs(seconds));
        Ok(())
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        // Unsupported, as the capabilities say: callers such as the worker
        // fall back to parking the message on that error.
        if self.dlq.is_none() {
            return Err(QueueError::unsupported(BACKEND, "dead_letter"));
        }
        // SQS cannot give a message's body back from a receipt: the delivery
        // must have been received by this process and not settled since.
        let d = inflight::get(&self.url, receipt.as_str())
            .ok_or(QueueError::StaleReceipt { backend: BACKEND })?;
        self.move_to_dlq(receipt.as_str(), &d, reason, d.attempt)
            .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.list_dead_letters(limit).await
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        self.replay(which).await
    }

    async fn delete_dead_letters(&self, ids: &[MessageId]) -> Result<u64> {
        self.delete_dead(ids).await
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        self.purge_dlq().await
    }

    async fn purge(&self) -> Result<u64> {
        let before = self.stats().await?;
        self.sdk
            .purge_queue()
            .queue_url(&self.url)
            .send()
            .await
            .map_err(|e| self.err(Fault::from_sdk(&e), "purge_queue"))?;
        Ok(before.depth + before.in_flight + before.delayed)
    }

    /// Deletes the queue and the dead-letter queue `ensure_queue` made for
    /// it (`<name>-dlq-<hash>`); a dead-letter queue the redrive policy
    /// names otherwise may be shared with other queues and is kept. SQS
    /// refuses to create a deleted name again for 60 seconds.
    async fn drop_queue(&self) -> Result<()> {
        self.drop_queues().await
    }

    async fn stats(&self) -> Result<QueueStats> {
        let counts = |url: String| async move {
            let out = self
                .sdk
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .map_err(|e| self.err(Fault::from_sdk(&e), "get_queue_attributes"))?;
            let attrs = out.attributes().cloned().unwrap_or_default();
            let n = |k: QueueAttributeName| {
                attrs
                    .get(&k)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            Ok::<_, QueueError>((
                n(QueueAttributeName::ApproximateNumberOfMessages),
                n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
                n(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            ))
        };
        let (depth, in_flight, delayed) = counts(self.url.clone()).await?;
        let dead_lettered = match &self.dlq {
            Some(dlq) => {
                let (visible, hidden, delayed) = counts(dlq.url.clone()).await?;
                visible + hidden + delayed
            }
            None => 0,
        };
        Ok(QueueStats::default()
            .with_depth(depth)
            .with_in_flight(in_flight)
            .with_delayed(delayed)
            .with_dead_lettered(dead_lettered)
            .with_oldest_age(None))
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }
}
