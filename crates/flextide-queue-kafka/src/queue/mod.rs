//! The `QueueProvider` of a Kafka queue: thin, each job in its own file.

pub(crate) mod admin;
mod dead;
mod engine;
mod pop;
mod push;
mod settle;
mod stats;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, DeadLetter, Delivery, Message, MessageId, QueueOptions, QueueProvider,
    QueueStats, Receipt, Replay, Result,
};

pub(crate) use engine::Engine;

use crate::{BACKEND, Client, layout};

/// Largest payload accepted: under librdkafka's default `message.max.bytes`
/// (1,000,000) and the broker's, with room for the headers.
pub const MAX_PAYLOAD_BYTES: usize = 900_000;

/// A queue on Kafka: a topic `ftq.<name>` and a consumer group
/// `ftq.<name>`, dead letters on `ftq.<name>.dlq`.
pub struct KafkaQueue {
    pub(crate) client: Arc<Client>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) name: String,
    pub(crate) topic: String,
    pub(crate) dlq: String,
    pub(crate) options: QueueOptions,
}

impl fmt::Debug for KafkaQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaQueue")
            .field("name", &self.name)
            .field("brokers", &self.client.endpoint.brokers)
            .field("options", &self.options)
            .finish()
    }
}

impl KafkaQueue {
    pub(crate) fn new(
        client: Arc<Client>,
        engine: Arc<Engine>,
        name: &str,
        options: QueueOptions,
    ) -> Self {
        KafkaQueue {
            client,
            engine,
            name: name.to_owned(),
            topic: layout::topic(name),
            dlq: layout::dlq_topic(name),
            options,
        }
    }

    /// Leaves the consumer group and joins it again, forgetting every
    /// lease this process holds on the queue (their records come back from
    /// the last commit): what a consumer restart does. For tests of
    /// rebalances and reconnects.
    pub async fn rejoin(&self) -> Result<()> {
        self.engine.stop().await;
        self.engine.ensure_consumer().await
    }

    /// Starts this process's consumer on the queue now (joining its
    /// consumer group, which takes about half the session timeout) rather
    /// than at the first pop, so that the first pop finds records fetched.
    /// Returns without waiting for the join.
    pub async fn start_consumer(&self) -> Result<()> {
        self.engine.ensure_consumer().await
    }

    /// Starts this process's consumer on the queue if it does not run yet
    /// and waits up to `timeout` for the group to assign it its partitions
    /// (a join takes about half the session timeout; a member beyond the
    /// partition count is assigned none, which also counts). Returns
    /// whether the assignment came in time: until it does, pops of this
    /// process find nothing. For a worker that should report ready only
    /// once it consumes, and for measurements that must not time the join.
    pub async fn wait_for_assignment(&self, timeout: std::time::Duration) -> Result<bool> {
        self.engine.ensure_consumer().await?;
        Ok(self.engine.wait_joined(timeout).await)
    }

    /// Creates the queue's topics now, if this process has not yet (the
    /// first push or pop does it anyway).
    pub async fn create(&self) -> Result<()> {
        self.engine.ensure_topics().await
    }

    /// The topic the queue's records are on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic the queue's dead letters are on.
    pub fn dead_letter_topic(&self) -> &str {
        &self.dlq
    }
}

#[async_trait]
impl QueueProvider for KafkaQueue {
    fn queue_name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            delay: true,
            ordering_key: true,
            max_payload_bytes: Some(MAX_PAYLOAD_BYTES),
            max_batch: Some(500),
            extend_lease: true,
            fenced_receipts: true,
            dead_letters: true,
            delete_dead_letters: true,
            release: true,
            drop_queue: true,
            ..Capabilities::default()
        }
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        push::push(self, message).await
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        push::push_batch(self, messages).await
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        pop::pop_batch(self, max, wait).await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        settle::delete(self, receipt).await
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        settle::delete_batch(self, receipts).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        settle::nack(self, receipt, delay).await
    }

    async fn release(&self, receipt: &Receipt) -> Result<()> {
        settle::release(self, receipt)
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        settle::extend(self, receipt, by)
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        settle::dead_letter(self, receipt, reason).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        pop::sweep(self).await?;
        dead::list(self, limit).await
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        dead::replay(self, which).await
    }

    async fn delete_dead_letters(&self, ids: &[MessageId]) -> Result<u64> {
        dead::delete(self, ids).await
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        dead::purge(self).await
    }

    async fn drop_queue(&self) -> Result<()> {
        self.engine.stop().await;
        self.client.wait_closed(&self.name).await;
        admin::drop_all(&self.client, &self.name).await?;
        self.engine
            .topics_ready
            .store(false, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats> {
        pop::sweep(self).await?;
        stats::stats(self).await
    }

    async fn close(&self) -> Result<()> {
        // The last handle on the queue leaves the group cleanly (commits
        // what is settled); others keep sharing the consumer.
        if Arc::strong_count(&self.engine) == 1 {
            self.engine.stop().await;
        }
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
