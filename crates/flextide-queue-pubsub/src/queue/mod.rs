//! `PubSubQueue`: one queue on Pub/Sub. The operations live in files of
//! their own: creating and dropping (`open.rs`), pushing (`push.rs`),
//! popping (`pop.rs`), settling (`settle.rs`), dead letters (`dead.rs`),
//! and what a handle remembers of its deliveries (`held.rs`).

mod dead;
mod held;
mod open;
mod pop;
mod push;
mod settle;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, DeadLetter, Delivery, Message, MessageId, QueueOptions, QueueProvider,
    QueueStats, Receipt, Replay, Result,
};

use crate::{BACKEND, PubSubConfig, conn::Conn, names::Names};

/// Shortest and longest ack deadline Google Cloud accepts (the emulator
/// takes others; the lease is clamped so both behave alike).
pub(crate) const MIN_ACK_SECONDS: i32 = 10;
pub(crate) const MAX_ACK_SECONDS: i32 = 600;

/// The largest payload a push takes: Pub/Sub's 10 MB per message, less
/// room for the attributes (our id and headers, at most a few KiB).
pub(crate) const MAX_PAYLOAD: usize = 10_000_000 - 16 * 1024;

/// One queue on Pub/Sub, opened by [`PubSub::open`](crate::PubSub::open).
pub struct PubSubQueue {
    config: Arc<PubSubConfig>,
    name: String,
    names: Names,
    conn: Conn,
    options: QueueOptions,
    /// The subscription's ack deadline in seconds: the lease of every
    /// delivery (the options' lease, clamped, until the subscription is
    /// found or created).
    lease_secs: AtomicI32,
    /// Whether the subscription has exactly-once delivery (fenced receipts).
    exactly_once: AtomicBool,
    /// The subscription's dead-letter policy's `max_delivery_attempts`
    /// (0: none, so deliveries carry no attempt count).
    policy_max: AtomicU32,
    /// Whether this handle knows the topics and subscriptions exist; cleared
    /// by `drop_queue`. Creation is one at a time (`creating`).
    created: AtomicBool,
    creating: tokio::sync::Mutex<()>,
    held: held::Held,
}

impl fmt::Debug for PubSubQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubSubQueue")
            .field("queue", &self.name)
            .field("subscription", &self.names.subscription)
            .field("emulator", &self.config.emulator)
            .field("lease", &self.lease())
            .field("exactly_once", &self.exactly_once())
            .finish()
    }
}

impl PubSubQueue {
    /// The lease every delivery gets: the subscription's ack deadline.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.load(Ordering::Acquire) as u64)
    }

    /// Whether the subscription has exactly-once delivery, so stale
    /// receipts are refused (as far as this handle knows: the setting of
    /// the configuration until the subscription was found or created).
    pub fn exactly_once(&self) -> bool {
        self.exactly_once.load(Ordering::Acquire)
    }

    /// The fully qualified names of the queue's topic and subscription.
    pub fn topic(&self) -> &str {
        &self.names.topic
    }

    /// The queue's subscription.
    pub fn subscription(&self) -> &str {
        &self.names.subscription
    }

    /// Requests this handle has sent to Pub/Sub (every try counted), by
    /// kind: `publish`, `pull`, `acknowledge`, `modify_ack_deadline`,
    /// `admin` (creating, reading, deleting, seeking). For measuring the
    /// request cost per message, which is what Pub/Sub bills.
    pub fn request_counts(&self) -> Vec<(&'static str, u64)> {
        crate::conn::OPS
            .into_iter()
            .zip(self.conn.counts())
            .collect()
    }

    /// Creates the queue's topics and subscriptions now, as its first push
    /// or pop would (with this handle's lease and max attempts), and reads
    /// the settings of those that existed.
    pub async fn create(&self) -> Result<()> {
        self.ensure().await
    }
}

#[async_trait]
impl QueueProvider for PubSubQueue {
    fn queue_name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_payload_bytes: Some(MAX_PAYLOAD),
            max_batch: Some(self.config.max_batch),
            extend_lease: true,
            // Only exactly-once subscriptions refuse a stale ack id.
            fenced_receipts: self.exactly_once(),
            dead_letters: true,
            delete_dead_letters: true,
            drop_queue: true,
            // No count of a subscription's messages outside Cloud Monitoring.
            blind_stats: true,
            ..Capabilities::default()
        }
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        let mut ids = self
            .publish(vec![message])
            .await
            .map_err(|mut e| match &mut e {
                flextide_queue_core::QueueError::PartialBatch { failures, .. }
                    if failures.len() == 1 =>
                {
                    failures.pop().map(|f| f.error).unwrap_or(e)
                }
                _ => e,
            })?;
        Ok(ids.remove(0))
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.publish(messages).await
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.pop_many(max, wait).await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        self.ack_one(receipt).await
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        self.ack_many(receipts).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.give_back(receipt, delay).await
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        self.extend_lease(receipt, by).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        self.bury_receipt(receipt, reason).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.list_dead(limit).await
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

    async fn drop_queue(&self) -> Result<()> {
        self.drop_all().await
    }

    /// Pub/Sub has no count of a subscription's messages outside Cloud
    /// Monitoring: `depth`, `in_flight` and `delayed` are always 0 and
    /// `oldest_age` is `None`. `dead_lettered` is counted by listing the
    /// dead-letter subscription.
    async fn stats(&self) -> Result<QueueStats> {
        let dead = self.count_dead().await?;
        Ok(QueueStats::default().with_dead_lettered(dead))
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
