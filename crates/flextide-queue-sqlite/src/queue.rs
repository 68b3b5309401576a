//! The queue handle and its `QueueProvider` implementation, which hands each
//! operation to the file of its job (push, claim, settle, dead, stats).

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, DeadLetter, Delivery, Message, QueueOptions, QueueProvider, QueueStats, Receipt,
    Replay,
};
use flextide_queue_core::{
    MessageId, Result,
    backend::{self},
    validate_queue_name,
};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use tokio::sync::Notify;

use crate::{
    BACKEND, CAPABILITIES, PoolSettings, SqliteQueueBuilder, builder::Source, claim, connect, dead,
    push, settle, stats,
};

/// A queue stored in a SQLite database, file or in-memory.
///
/// Every queue of a database shares two tables, told apart by a `queue`
/// column, so any number of queues can share one pool and one file, and
/// several processes can work on one file at once: claiming is one atomic
/// `UPDATE … RETURNING` statement and every delivery gets a fresh fencing
/// token. Cloning is cheap and shares the pool.
///
/// ```no_run
/// # async fn demo() -> flextide_queue_core::Result<()> {
/// use std::time::Duration;
/// use flextide_queue_core::{Message, QueueOptions, QueueProvider};
/// use flextide_queue_sqlite::SqliteQueue;
///
/// let queue = SqliteQueue::connect("sqlite://flextide.db", "emails", QueueOptions::default()).await?;
/// queue.push(Message::new("hello")).await?;
/// if let Some(delivery) = queue.pop(Duration::from_secs(1)).await? {
///     queue.delete(&delivery.receipt).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteQueue {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) pool: SqlitePool,
    pub(crate) options: QueueOptions,
    /// Shared by every handle on this queue of this database in the process.
    pub(crate) wake: Arc<Notify>,
}

impl fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("name", &self.inner.name)
            .field("options", &self.inner.options)
            .finish()
    }
}

impl SqliteQueue {
    /// Starts building a queue named `name`; see [`SqliteQueueBuilder`].
    pub fn builder(name: impl Into<String>) -> SqliteQueueBuilder {
        SqliteQueueBuilder {
            name: name.into(),
            options: QueueOptions::default(),
            source: Source::None,
            migrate: true,
            settings: PoolSettings::default(),
        }
    }

    /// Opens the queue `name` in the database at `url` (`sqlite://path/to/file.db`,
    /// a plain path, or `sqlite::memory:`) with a pool of its own, creating
    /// the file and the tables when missing. To share one pool between
    /// queues, open it with [`connect_pool`] and use [`SqliteQueue::from_pool`].
    pub async fn connect(url: &str, name: &str, options: QueueOptions) -> Result<Self> {
        Self::builder(name).url(url).options(options).open().await
    }

    /// The queue `name` on an existing pool. Does not touch the database:
    /// run [`migrate`] on the pool once before using it. For an in-memory
    /// database the pool must have exactly one connection (as
    /// [`connect_pool`] makes it), or each connection sees its own database.
    pub fn from_pool(pool: SqlitePool, name: &str, options: QueueOptions) -> Result<Self> {
        validate_queue_name(name)?;
        Ok(Self::new_unchecked(pool, name.to_owned(), options))
    }

    pub(crate) fn new_unchecked(pool: SqlitePool, name: String, options: QueueOptions) -> Self {
        let key = format!("{}\0{name}", connect::database_key(&pool).display());
        let wake = flextide_queue_sql::waker(&key);
        SqliteQueue {
            inner: Arc::new(Inner {
                name,
                pool,
                options,
                wake,
            }),
        }
    }

    /// The pool this queue uses, to start a transaction for
    /// [`SqliteQueue::push_in_tx`] or to open more queues on it.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// The options the queue was opened with.
    pub fn options(&self) -> &QueueOptions {
        &self.inner.options
    }

    /// Enqueues `message` inside your own transaction, so it commits or rolls
    /// back with the rest of your work (a workflow step and its next task).
    /// Pass `&mut *tx`. Begin the transaction with
    /// `pool.begin_with("BEGIN IMMEDIATE")` when it reads before writing, so
    /// SQLite waits for the write lock instead of failing with "database is
    /// locked". Once committed, call [`SqliteQueue::notify_pushed`] to wake
    /// waiting pops in this process at once (they find it by polling anyway).
    /// On an in-memory database the pool has one connection, which your
    /// transaction holds: call no other queue operation until it ends.
    ///
    /// ```no_run
    /// # async fn demo(queue: flextide_queue_sqlite::SqliteQueue) -> flextide_queue_core::Result<()> {
    /// use flextide_queue_core::Message;
    /// let mut tx = queue.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    /// // ... your own writes on &mut *tx ...
    /// queue.push_in_tx(&mut tx, Message::new("next step")).await?;
    /// tx.commit().await.unwrap();
    /// queue.notify_pushed();
    /// # Ok(()) }
    /// ```
    pub async fn push_in_tx(
        &self,
        conn: &mut SqliteConnection,
        message: Message,
    ) -> Result<MessageId> {
        self.check_message(&message)?;
        let id = message.id.clone();
        self.insert_one(&mut *conn, &message).await?;
        Ok(id)
    }

    /// Wakes the pops waiting on this queue in this process, after a
    /// [`SqliteQueue::push_in_tx`] transaction committed.
    pub fn notify_pushed(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Removes this queue and everything it stored; see [`drop_queue`].
    pub async fn drop_queue(&self) -> Result<u64> {
        crate::drop_queue(&self.inner.pool, &self.inner.name).await
    }

    pub(crate) fn max_attempts(&self) -> i64 {
        self.inner.options.max_attempts.map_or(i64::MAX, i64::from)
    }

    pub(crate) fn max_attempts_reason(&self) -> String {
        backend::max_attempts_reason(self.inner.options.max_attempts.unwrap_or(u32::MAX))
    }
}

#[async_trait]
impl QueueProvider for SqliteQueue {
    fn queue_name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
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
}
