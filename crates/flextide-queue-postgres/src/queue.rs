//! The queue handle and its `QueueProvider` implementation, which hands each
//! operation to the file of its job (push, claim, settle, dead, stats).

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, DeadLetter, Delivery, Message, MessageId, QueueOptions, QueueProvider,
    QueueStats, Receipt, Replay, Result, validate_queue_name,
};
use flextide_queue_sql::MAX_DELAY;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::{
    BACKEND, PostgresBackend, PostgresConfig, claim, dead, push, settle, sql::Statements, stats,
};

/// One named queue in PostgreSQL: rows of shared tables, claimed with
/// `FOR UPDATE SKIP LOCKED`, woken by LISTEN/NOTIFY.
///
/// ```no_run
/// # async fn demo() -> flextide_queue_core::Result<()> {
/// use std::time::Duration;
/// use flextide_queue_core::{Message, QueueOptions, QueueProvider};
/// use flextide_queue_postgres::PostgresQueue;
///
/// let queue = PostgresQueue::connect("postgres://localhost/app", "emails", QueueOptions::default()).await?;
/// flextide_queue_postgres::migrate(queue.pool()).await?;
/// queue.push(Message::new("hello")).await?;
/// if let Some(d) = queue.pop(Duration::from_secs(5)).await? {
///     queue.delete(&d.receipt).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresQueue {
    pub(crate) backend: PostgresBackend,
    pub(crate) name: Arc<str>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) options: QueueOptions,
    pub(crate) lease_ms: i64,
    pub(crate) max_attempts: i32,
    pub(crate) exhausted_reason: String,
}

impl fmt::Debug for PostgresQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresQueue")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PostgresQueue {
    /// Opens a pool on `url` and the queue `name` on it. To open many
    /// queues on one pool, use [`PostgresBackend`].
    pub async fn connect(url: &str, name: &str, options: QueueOptions) -> Result<Self> {
        validate_queue_name(name)?;
        PostgresBackend::connect(url, PostgresConfig::default())
            .await?
            .queue(name, options)
    }

    /// Opens queue `name` on your pool with the default settings. Queues
    /// opened this way each start their own listener connection when they
    /// first wait; [`PostgresBackend::queue`] shares one.
    pub fn from_pool(pool: PgPool, name: &str, options: QueueOptions) -> Result<Self> {
        PostgresBackend::from_pool(pool, PostgresConfig::default())?.queue(name, options)
    }

    /// The backend this queue belongs to.
    pub fn backend(&self) -> &PostgresBackend {
        &self.backend
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.backend.inner.pool
    }

    /// The options the queue was opened with.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    pub(crate) fn sql(&self) -> &Statements {
        &self.backend.inner.sql
    }

    pub(crate) fn channel(&self) -> &str {
        &self.backend.inner.config.channel
    }

    /// Removes every message and dead letter of this queue (see
    /// [`PostgresBackend::drop_queue`]).
    pub async fn drop_queue(&self) -> Result<u64> {
        self.backend.drop_queue(&self.name).await
    }
}

#[async_trait]
impl QueueProvider for PostgresQueue {
    fn queue_name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fifo: true,
            ordering_key: true,
            priority: true,
            delay: true,
            max_delay: Some(MAX_DELAY),
            max_payload_bytes: self.backend.inner.config.max_payload_bytes,
            max_batch: None,
            extend_lease: true,
            fenced_receipts: true,
            dead_letters: true,
            dedup: false,
            exact_stats: true,
            peek: true,
            purge: true,
        }
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        push::push(self, message).await
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        push::push_batch(self, messages).await
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        claim::pop_batch(self, max, wait).await
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

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        settle::extend(self, receipt, by).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        settle::dead_letter(self, receipt, reason).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        dead::dead_letters(self, limit).await
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        dead::replay_dead_letters(self, which).await
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        dead::purge_dead_letters(self).await
    }

    async fn peek(&self, limit: usize) -> Result<Vec<Message>> {
        stats::peek(self, limit).await
    }

    async fn purge(&self) -> Result<u64> {
        stats::purge(self).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        stats::stats(self).await
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
