//! `NatsQueue`: one queue on a JetStream server. The operations live in
//! files of their own: opening (`open.rs`), pushing (`push.rs`), popping
//! (`pop.rs`), settling (`settle.rs`), dead letters (`dead.rs`) and counts
//! (`stats.rs`).

mod attempts;
mod dead;
mod open;
mod pop;
mod pull;
mod push;
mod repair;
mod settle;
mod stats;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{self, stream::Stream};
use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, DeadLetter, Delivery, Message, MessageId, Pushed, QueueOptions, QueueProvider,
    QueueStats, Receipt, Replay, Result,
};
use tokio::task::AbortHandle;

pub(crate) use open::{connect, create, drop_streams, jetstream, queue_names};

use crate::{BACKEND, Settings};

/// One queue on a NATS JetStream server, opened by
/// [`Nats::open`](crate::Nats::open).
pub struct NatsQueue {
    settings: Arc<Settings>,
    name: String,
    client: async_nats::Client,
    js: jetstream::Context,
    /// The queue's work-queue stream and its dead-letter stream (handles
    /// only: the streams may not exist yet).
    stream: Stream<()>,
    dlq: Stream<()>,
    /// The stream of dedup records (see `layout::dedup_stream`).
    dedup: Stream<()>,
    stream_name: String,
    subject: String,
    dlq_subject: String,
    /// Whether this handle knows the streams and the consumer exist
    /// (found at open, or created by the first push or pop); cleared by
    /// `drop_queue`. Creation is one at a time (`creating`).
    created: std::sync::atomic::AtomicBool,
    creating: tokio::sync::Mutex<()>,
    /// Pull requests and the inbox their answers arrive on.
    puller: pull::PullPool,
    /// The consumer's `ack_wait`: the lease every delivery gets (the
    /// options' lease until the consumer is found or created).
    lease: Mutex<Duration>,
    /// Whether a lease other than the one asked for was warned about.
    lease_warned: std::sync::atomic::AtomicBool,
    /// The work-queue stream's duplicate window: the dedup window in effect
    /// (the options' until the stream is found or created).
    dedup_window: Mutex<Duration>,
    /// Whether this handle knows the stream of dedup records exists.
    dedup_made: std::sync::atomic::AtomicBool,
    options: QueueOptions,
    /// The server's version, and whether it (and the stream) take message
    /// schedules, which delayed pushes need.
    server_version: String,
    server_schedules: bool,
    schedules: std::sync::atomic::AtomicBool,
    /// Largest payload a push may carry (the server's `max_payload`, less
    /// room for our headers).
    max_payload: usize,
    /// Leases extended past `ack_wait`: the task that keeps each one alive,
    /// by ack subject, until it is settled through this handle or its time is up.
    keepalive: Mutex<HashMap<String, AbortHandle>>,
    /// The attempts this handle handed out, so a redelivery the server
    /// counts lower still counts up (see `attempts.rs`).
    attempts: attempts::Attempts,
    /// How many entries `keepalive` holds (read without the lock). A task
    /// that ran out leaves its entry until the receipt is settled or the
    /// handle closes.
    extended: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsQueue")
            .field("queue", &self.name)
            .field("server", &self.settings.shown)
            .field("server_version", &self.server_version)
            .field("stream", &self.stream_name)
            .field("lease", &self.lease())
            .finish()
    }
}

impl Drop for NatsQueue {
    fn drop(&mut self) {
        if let Ok(tasks) = self.keepalive.get_mut() {
            for (_, task) in tasks.drain() {
                task.abort();
            }
        }
    }
}

impl NatsQueue {
    /// The lease every delivery of this queue gets: the consumer's
    /// `ack_wait`, fixed when the queue's consumer was created.
    pub fn lease(&self) -> Duration {
        *self.lease.lock().unwrap()
    }

    /// The dedup window in effect: the duplicate window of the queue's
    /// stream, fixed when the stream was created.
    pub fn dedup_window(&self) -> Duration {
        *self.dedup_window.lock().unwrap()
    }

    /// Whether delayed pushes work: the server takes message schedules, and
    /// so does the queue's stream (or it does not exist yet).
    fn schedules(&self) -> bool {
        self.schedules.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The server's version, as it announced itself at connect.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// Creates the queue's stream, dead-letter stream and consumer now, as
    /// its first push or pop would (with this handle's lease): for a queue
    /// that other NATS clients publish to before any handle pushed.
    pub async fn create(&self) -> Result<()> {
        self.ensure().await
    }

    /// Makes the client drop its connection and reconnect (for tests of
    /// connection loss). Deliveries keep their leases on the server; their
    /// receipts settle them from the new connection.
    pub async fn reconnect(&self) -> Result<()> {
        self.client
            .force_reconnect()
            .await
            .map_err(|e| flextide_queue_core::QueueError::connection(BACKEND, e))
    }

    fn timeout(&self) -> Duration {
        self.settings.config.operation_timeout
    }
}

#[async_trait]
impl QueueProvider for NatsQueue {
    fn queue_name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // A nacked message comes back after newer ones.
            fifo: false,
            delay: self.schedules(),
            max_payload_bytes: Some(self.max_payload),
            max_batch: Some(self.settings.config.max_batch),
            // `+WPI` restarts the lease at the full `ack_wait`; a longer
            // `by` is kept alive from this process (see the README).
            extend_lease: true,
            // JetStream accepts an ack on an old delivery's subject.
            fenced_receipts: false,
            dead_letters: true,
            delete_dead_letters: true,
            // Nats-Msg-Id and the stream's duplicate window.
            dedup: true,
            dedup_window: Some(self.dedup_window()),
            // Nacked messages waiting for redelivery count as in flight.
            exact_stats: false,
            purge: true,
            drop_queue: true,
            ..Capabilities::default()
        }
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        self.push_one(message).await.map(Pushed::into_id)
    }

    async fn push_unique(&self, message: Message) -> Result<Pushed> {
        self.push_one(message).await
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.push_many(messages).await
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.pop_many(max, wait).await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        self.ack(receipt).await
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        self.ack_many(receipts).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.nak(receipt, delay).await
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        self.in_progress(receipt, by).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        self.terminate(receipt, reason).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        Ok(self
            .list_dead(limit)
            .await?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        self.replay(which).await
    }

    async fn delete_dead_letters(&self, ids: &[MessageId]) -> Result<u64> {
        self.delete_dead(ids).await
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        self.purge_dead().await
    }

    async fn purge(&self) -> Result<u64> {
        self.purge_queue().await
    }

    async fn drop_queue(&self) -> Result<()> {
        let _one = self.creating.lock().await;
        self.forget();
        drop_streams(&self.js, &self.settings.config, &self.name).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.counts().await
    }

    async fn close(&self) -> Result<()> {
        for (_, task) in self.keepalive.lock().unwrap().drain() {
            task.abort();
        }
        // Deliveries received but never handed out go back at once (with
        // their attempt counted: JetStream cannot undo a delivery).
        for m in self.puller.unclaimed().await {
            if let Some(reply) = m.reply {
                let _ = self
                    .client
                    .publish(reply, bytes::Bytes::from_static(b"-NAK"))
                    .await;
            }
        }
        // Flushes what is buffered (acks sent without a reply) and closes.
        let _ = tokio::time::timeout(self.timeout(), self.client.drain()).await;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
