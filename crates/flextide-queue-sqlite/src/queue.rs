//! The queue handle and its `QueueProvider` implementation, which hands each
//! operation to the file of its job (push, claim, settle, dead, stats).

use std::{fmt, sync::Arc};

use flextide_queue_core::{
    Capabilities, Message, MessageId, Pushed, QueueOptions, Result,
    backend::{self},
    validate_queue_name,
};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use tokio::sync::Notify;

use crate::{BACKEND, CAPABILITIES, PoolSettings, SqliteQueueBuilder, builder::Source, connect};

/// A queue stored in a SQLite database, file or in-memory.
///
/// Every queue of a database shares the same tables, told apart by a `queue`
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
    /// Incremental vacuum passes when the queue drains.
    pub(crate) vacuum: crate::vacuum::Vacuum,
    /// When this handle's unique pushes sweep expired dedup rows.
    pub(crate) dedup_sweep: flextide_queue_sql::dedup::ExpiredSweep,
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
    /// queues, open it with [`connect_pool`](crate::connect_pool) and use [`SqliteQueue::from_pool`].
    pub async fn connect(url: &str, name: &str, options: QueueOptions) -> Result<Self> {
        Self::builder(name).url(url).options(options).open().await
    }

    /// The queue `name` on an existing pool. Does not touch the database:
    /// run [`migrate`](crate::migrate) on the pool once before using it. For an in-memory
    /// database the pool must have exactly one connection (as
    /// [`connect_pool`](crate::connect_pool) makes it), or each connection sees its own database.
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
                vacuum: Default::default(),
                dedup_sweep: Default::default(),
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
    /// A message with a dedup id claims it in your transaction (see
    /// [`SqliteQueue::push_unique_in_tx`]); a duplicate is not inserted and
    /// the first message's id is returned.
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
        self.push_unique_in_tx(conn, message)
            .await
            .map(Pushed::into_id)
    }

    /// Wakes the pops waiting on this queue in this process, after a
    /// [`SqliteQueue::push_in_tx`] transaction committed.
    pub fn notify_pushed(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Removes this queue and everything it stored; see [`drop_queue`](crate::drop_queue).
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

flextide_queue_sql::queue_provider! {
    SqliteQueue in crate {
        backend: BACKEND,
        name: |q| &q.inner.name,
        capabilities: |q| Capabilities {
            dedup_window: Some(flextide_queue_sql::dedup::dedup_window(&q.inner.options)),
            ..CAPABILITIES
        },
    }
}
